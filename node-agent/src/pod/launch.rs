//! The launch plan of one container, pure: the pod and the node's facts in, the
//! runtime's [`Launch`] out (program, environment, working directory, log file,
//! limits, sandbox) with the file-system work it needs first (volumes to prepare,
//! the pod's temporary directory), or the reason it cannot start. The worker does
//! the I/O ([`crate::pod`]); everything decided here is unit-tested.

use std::path::{Path, PathBuf};

use twinset_proto::v1::Pod;

use crate::container::reason;
use crate::env::{self, Placement};
use crate::events;
use crate::identity::PodFiles;
use crate::images::ImageTable;
use crate::logs;
use crate::runtime::{BindMount, Launch, Limits, Sandbox};
use crate::volumes::{self, PlannedMount};

/// What the plan needs to know about the node.
#[derive(Clone, Copy, Debug)]
pub struct NodeFacts<'a> {
    /// The node's name.
    pub node_name: &'a str,
    /// The node's address (hostIP).
    pub host_ip: &'a str,
    /// The agent's data directory (claims live under it).
    pub data_dir: &'a Path,
    /// Whether the runtime can isolate pods (containers then get a [`Sandbox`]).
    pub isolated: bool,
    /// The image table.
    pub images: &'a ImageTable,
}

/// What the plan needs to know about the pod.
#[derive(Clone, Copy, Debug)]
pub struct PodFacts<'a> {
    /// The pod as assigned.
    pub pod: &'a Pod,
    /// The pod's folder on the node (logs, emptyDirs, its /etc files, its /tmp).
    pub dir: &'a Path,
    /// The pod's IP.
    pub pod_ip: &'a str,
    /// The hostname its containers see.
    pub hostname: &'a str,
}

/// How to start one container.
#[derive(Clone, Debug)]
pub struct LaunchPlan {
    /// What the runtime starts. Its sandbox (when pods are isolated) has the volume
    /// mounts and the hostname; the pod's `/etc` files are added by [`add_pod_files`]
    /// once written.
    pub launch: Launch,
    /// The container's volume mounts: their sources must exist before the start
    /// ([`volumes::prepare`]).
    pub mounts: Vec<PlannedMount>,
    /// The pod's own temporary directory (the container's `TMPDIR`), to create
    /// before the start; None when the container sets `TMPDIR` itself.
    pub tmp_dir: Option<PathBuf>,
}

/// Why a container cannot start: it waits with `reason` until the pod changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotStarted {
    /// The container's waiting reason.
    pub reason: String,
    /// The Warning event's reason.
    pub event: String,
    /// What is wrong.
    pub message: String,
}

impl NotStarted {
    /// The container's configuration cannot be used (CreateContainerConfigError).
    pub fn config(message: String) -> NotStarted {
        NotStarted {
            reason: reason::CREATE_CONFIG_ERROR.into(),
            event: reason::CREATE_CONFIG_ERROR.into(),
            message,
        }
    }

    /// Its volumes cannot be prepared (waiting CreateContainerConfigError, event
    /// FailedMount).
    pub fn mount(message: String) -> NotStarted {
        NotStarted {
            reason: reason::CREATE_CONFIG_ERROR.into(),
            event: events::FAILED_MOUNT.into(),
            message,
        }
    }
}

/// The working directory of a container: its `workingDir`, else `/`.
pub fn working_dir(spec: &twinset_proto::v1::Container) -> PathBuf {
    if spec.working_dir.is_empty() {
        PathBuf::from("/")
    } else {
        PathBuf::from(&spec.working_dir)
    }
}

/// The pod's limits: the sum over its containers (unusable limits count as none).
pub fn pod_limits(pod: &Pod) -> Limits {
    let all: Vec<Limits> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|c| Limits::from_resources(c.resources.as_ref()).unwrap_or_default())
        .collect();
    Limits::pod_total(&all)
}

/// The plan for container `index` of the pod: its program from the image table,
/// its environment (the pod variables, the image's, its own, the volume variables
/// unless it sets them, `TMPDIR` in the pod's folder unless it sets it), its volume
/// mounts, its limits and, when pods are isolated, its sandbox.
pub fn plan(
    node: &NodeFacts<'_>,
    pod: &PodFacts<'_>,
    index: usize,
) -> Result<LaunchPlan, NotStarted> {
    let spec = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.get(index))
        .ok_or_else(|| NotStarted::config(format!("the pod has no container number {index}")))?;
    let uid = pod
        .pod
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let resolved = node.images.resolve(spec).map_err(|nr| NotStarted {
        event: nr.reason.clone(),
        reason: nr.reason,
        message: nr.message,
    })?;
    let at = Placement {
        node_name: node.node_name,
        pod_ip: pod.pod_ip,
        host_ip: node.host_ip,
        hostname: pod.hostname,
    };
    let mut env =
        env::container_env(pod.pod, spec, &resolved.image_env, &at).map_err(NotStarted::config)?;
    let mounts = volumes::mounts_for(pod.pod, spec, node.data_dir, pod.dir)
        .map_err(|e| NotStarted::mount(e.to_string()))?;
    // The container's own env wins over the volume variables.
    for (k, v) in volumes::mount_env(&mounts, node.isolated) {
        if env.get(&k).is_none() {
            env.set(&k, v);
        }
    }
    // A temporary directory of the pod's own (a container has its own /tmp; pods on
    // one machine must not meet in the host's), removed with the pod.
    let tmp_dir = if env.get("TMPDIR").is_none() {
        let tmp = pod.dir.join("tmp");
        env.set("TMPDIR", tmp.display().to_string());
        Some(tmp)
    } else {
        None
    };
    let limits = Limits::from_resources(spec.resources.as_ref())
        .map_err(|e| NotStarted::config(e.to_string()))?;
    let argv: Vec<String> = resolved.argv.iter().map(|a| env::expand(a, &env)).collect();
    let host_network = pod.pod.spec.as_ref().is_some_and(|s| s.host_network);
    let sandbox = node.isolated.then(|| Sandbox {
        hostname: (!host_network).then(|| pod.hostname.to_string()),
        mounts: mounts
            .iter()
            .map(|m| BindMount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
    });
    Ok(LaunchPlan {
        launch: Launch {
            pod_uid: uid,
            container: spec.name.clone(),
            argv,
            env: env.into_vec(),
            working_dir: working_dir(spec),
            log_path: logs::log_path(pod.dir, &spec.name),
            limits,
            pod_limits: pod_limits(pod.pod),
            sandbox,
        },
        mounts,
        tmp_dir,
    })
}

/// Adds the pod's `/etc/hosts` and `/etc/resolv.conf` (as written) to `sandbox`,
/// unless the container mounts its own file there.
pub fn add_pod_files(sandbox: &mut Sandbox, files: PodFiles) {
    for (file, target) in [
        (files.hosts, "/etc/hosts"),
        (files.resolv_conf, "/etc/resolv.conf"),
    ] {
        let target = Path::new(target);
        if sandbox.mounts.iter().any(|m| m.target == target) {
            continue;
        }
        if let Some(source) = file {
            sandbox.mounts.push(BindMount {
                source,
                target: target.to_path_buf(),
                read_only: false,
            });
        }
    }
}

/// The MountNotIsolated warning for a container whose volumes are given as paths on
/// the node (pods not isolated, because `why`); None without volumes.
pub fn not_isolated_message(container: &str, mounts: &[PlannedMount], why: &str) -> Option<String> {
    if mounts.is_empty() {
        return None;
    }
    let places: Vec<String> = mounts
        .iter()
        .map(|m| {
            format!(
                "{} is at {} (${})",
                m.target.display(),
                m.source.display(),
                volumes::mount_var(&m.target)
            )
        })
        .collect();
    Some(format!(
        "volume mounts of container {container} are not isolated ({why}): {}; the pod shares the node's hostname and /etc/hosts",
        places.join(", ")
    ))
}
