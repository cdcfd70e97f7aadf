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
    /// Its pinned network namespace (bridge mode); None shares the node's.
    pub netns: Option<&'a Path>,
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

    /// The pod's sandbox (its network) could not be made: the containers wait as
    /// ContainerCreating, with the kubelet's FailedCreatePodSandBox event.
    pub fn sandbox(message: String) -> NotStarted {
        NotStarted {
            reason: reason::CONTAINER_CREATING.into(),
            event: "FailedCreatePodSandBox".into(),
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
        netns: if host_network {
            None
        } else {
            pod.netns.map(Path::to_path_buf)
        },
    });
    Ok(LaunchPlan {
        launch: Launch {
            pod_uid: uid,
            container: spec.name.clone(),
            argv,
            env: env.into_vec(),
            working_dir: working_dir(spec),
            // The run's log output is opened (I/O) only once the plan holds: see set_output.
            log_path: PathBuf::new(),
            limits,
            pod_limits: pod_limits(pod.pod),
            sandbox,
        },
        mounts,
        tmp_dir,
    })
}

/// Points the launch at the output of its run (the FIFO [`crate::logs`] drains into
/// rotated files), once the worker has opened it.
pub fn set_output(plan: &mut LaunchPlan, output: &Path) {
    plan.launch.log_path = output.to_path_buf();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use twinset_proto::v1;

    use super::*;

    const TABLE: &str = "images:\n  twinset/web:\n    command: [/opt/web/run]\n    args: [--port, \"8080\"]\n    env:\n      WEB_MODE: image\n      SHARED: from-image\n";

    fn table() -> ImageTable {
        ImageTable::parse(TABLE, Path::new("/etc/twinset/images.yaml")).unwrap()
    }

    fn container(name: &str) -> v1::Container {
        v1::Container {
            name: name.into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo $(POD_NAME) $(MISSING) $$(X)".into(),
            ],
            ..Default::default()
        }
    }

    fn pod(containers: Vec<v1::Container>) -> Pod {
        Pod {
            metadata: Some(v1::ObjectMeta {
                name: "web-0".into(),
                namespace: "shop".into(),
                uid: "u-1".into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                containers,
                volumes: vec![
                    v1::Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(v1::PersistentVolumeClaimVolumeSource {
                            claim_name: "data-web-0".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    v1::Volume {
                        name: "scratch".into(),
                        empty_dir: Some(Default::default()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str, read_only: bool) -> v1::VolumeMount {
        v1::VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only,
            ..Default::default()
        }
    }

    fn limits(memory: &str, cpu: &str) -> Option<v1::ResourceRequirements> {
        let mut l = BTreeMap::new();
        if !memory.is_empty() {
            l.insert("memory".to_string(), memory.to_string());
        }
        if !cpu.is_empty() {
            l.insert("cpu".to_string(), cpu.to_string());
        }
        Some(v1::ResourceRequirements {
            limits: l.into_iter().collect(),
            ..Default::default()
        })
    }

    /// Plans container `index` of `pod`, isolated or not.
    fn plan_of(pod: &Pod, index: usize, isolated: bool) -> Result<LaunchPlan, NotStarted> {
        plan_in(pod, index, isolated, None)
    }

    /// [`plan_of`] for a pod whose network namespace is pinned at `netns`.
    fn plan_in(
        pod: &Pod,
        index: usize,
        isolated: bool,
        netns: Option<&Path>,
    ) -> Result<LaunchPlan, NotStarted> {
        let images = table();
        let node = NodeFacts {
            node_name: "n1",
            host_ip: "192.0.2.1",
            data_dir: Path::new("/data"),
            isolated,
            images: &images,
        };
        let facts = PodFacts {
            netns,
            pod,
            dir: Path::new("/data/pods/shop_web-0_u-1"),
            pod_ip: "10.9.0.7",
            hostname: "web-0",
        };
        plan(&node, &facts, index)
    }

    fn env_of(p: &LaunchPlan, k: &str) -> Option<String> {
        p.launch
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn a_command_container_gets_its_argv_env_log_tmp_and_working_dir() {
        let p = pod(vec![container("app")]);
        let plan = plan_of(&p, 0, false).unwrap();
        let l = &plan.launch;
        assert_eq!(l.pod_uid, "u-1");
        assert_eq!(l.container, "app");
        assert_eq!(
            l.argv,
            ["sh", "-c", "echo web-0 $(MISSING) $(X)"],
            "$(VAR) expanded, unknown kept, $$ escaped"
        );
        for (k, v) in [
            ("POD_NAME", "web-0"),
            ("POD_NAMESPACE", "shop"),
            ("NODE_NAME", "n1"),
            ("POD_IP", "10.9.0.7"),
            ("HOSTNAME", "web-0"),
            ("PATH", crate::env::DEFAULT_PATH),
            ("TMPDIR", "/data/pods/shop_web-0_u-1/tmp"),
        ] {
            assert_eq!(env_of(&plan, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            plan.tmp_dir.as_deref(),
            Some(Path::new("/data/pods/shop_web-0_u-1/tmp"))
        );
        assert_eq!(l.working_dir, Path::new("/"));
        assert_eq!(
            l.log_path,
            Path::new(""),
            "the worker sets the run's output"
        );
        assert!(l.limits.is_empty() && l.pod_limits.is_empty());
        assert!(l.sandbox.is_none(), "not isolated");
        assert!(plan.mounts.is_empty());
    }

    #[test]
    fn the_image_table_gives_the_program_and_its_env_and_args_replace_its_args() {
        let mut c = v1::Container {
            name: "web".into(),
            image: "twinset/web".into(),
            env: vec![v1::EnvVar {
                name: "SHARED".into(),
                value: "from-container".into(),
                ..Default::default()
            }],
            working_dir: "/srv".into(),
            ..Default::default()
        };
        let plan = plan_of(&pod(vec![c.clone()]), 0, false).unwrap();
        assert_eq!(plan.launch.argv, ["/opt/web/run", "--port", "8080"]);
        assert_eq!(env_of(&plan, "WEB_MODE").as_deref(), Some("image"));
        assert_eq!(
            env_of(&plan, "SHARED").as_deref(),
            Some("from-container"),
            "the container's env wins"
        );
        assert_eq!(plan.launch.working_dir, Path::new("/srv"));
        c.args = vec!["--debug".into()];
        let plan = plan_of(&pod(vec![c]), 0, false).unwrap();
        assert_eq!(plan.launch.argv, ["/opt/web/run", "--debug"]);
    }

    #[test]
    fn an_image_missing_from_the_table_waits_with_its_reason() {
        let c = v1::Container {
            name: "db".into(),
            image: "mysql:8".into(),
            ..Default::default()
        };
        let why = plan_of(&pod(vec![c]), 0, false).unwrap_err();
        assert_eq!(why.reason, crate::images::IMAGE_NOT_IN_TABLE);
        assert_eq!(why.event, crate::images::IMAGE_NOT_IN_TABLE);
        assert!(why.message.contains("mysql:8"), "{}", why.message);
    }

    #[test]
    fn unusable_env_limits_or_volumes_are_config_errors() {
        let mut c = container("app");
        c.env = vec![v1::EnvVar {
            name: "X".into(),
            value_from: Some(v1::EnvVarSource {
                field_ref: Some(v1::ObjectFieldSelector {
                    field_path: "spec.nope".into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }];
        let why = plan_of(&pod(vec![c]), 0, false).unwrap_err();
        assert_eq!(
            why,
            NotStarted::config("env X: unsupported fieldRef fieldPath \"spec.nope\"".into())
        );

        let mut c = container("app");
        c.volume_mounts = vec![mount("nope", "/x", false)];
        let why = plan_of(&pod(vec![c]), 0, false).unwrap_err();
        assert_eq!(why.reason, reason::CREATE_CONFIG_ERROR);
        assert_eq!(why.event, events::FAILED_MOUNT);
        assert!(why.message.contains("nope"), "{}", why.message);

        let mut c = container("app");
        c.resources = limits("lots", "");
        let why = plan_of(&pod(vec![c]), 0, false).unwrap_err();
        assert_eq!(
            (why.reason.as_str(), why.event.as_str()),
            (reason::CREATE_CONFIG_ERROR, reason::CREATE_CONFIG_ERROR)
        );
        assert!(why.message.contains("lots"), "{}", why.message);

        let why = plan_of(&pod(vec![container("app")]), 1, false).unwrap_err();
        assert_eq!(why.reason, reason::CREATE_CONFIG_ERROR);
    }

    #[test]
    fn limits_are_the_containers_and_the_pods_sum() {
        let mut a = container("a");
        a.resources = limits("64Mi", "250m");
        let mut b = container("b");
        b.resources = limits("32Mi", "");
        let p = pod(vec![a, b]);
        let plan = plan_of(&p, 0, false).unwrap();
        assert_eq!(plan.launch.limits.memory_bytes, Some(64 << 20));
        assert_eq!(plan.launch.limits.cpu_millis, Some(250));
        assert_eq!(plan.launch.pod_limits.memory_bytes, Some(96 << 20));
        assert_eq!(
            plan.launch.pod_limits.cpu_millis, None,
            "a container without a cpu limit leaves the pod unbounded"
        );
    }

    #[test]
    fn volumes_are_planned_and_their_variables_say_where_they_are() {
        let mut c = container("app");
        c.volume_mounts = vec![
            mount("data", "/var/lib/app", false),
            mount("scratch", "/scratch", true),
        ];
        let p = pod(vec![c.clone()]);
        let claim = crate::volumes::claim_dir(
            Path::new("/data"),
            &crate::volumes::ClaimKey::new("shop", "data-web-0").unwrap(),
        );

        // Not isolated: the container finds its volumes at their folders on the node.
        let plan = plan_of(&p, 0, false).unwrap();
        assert_eq!(plan.mounts.len(), 2);
        assert_eq!(plan.mounts[0].source, claim);
        assert_eq!(
            env_of(&plan, "TWINSET_MOUNT_VAR_LIB_APP").map(PathBuf::from),
            Some(claim.clone())
        );
        assert!(plan.launch.sandbox.is_none());

        // Isolated: bind mounts at the mountPaths, the pod's hostname.
        let plan = plan_of(&p, 0, true).unwrap();
        assert_eq!(
            env_of(&plan, "TWINSET_MOUNT_VAR_LIB_APP").as_deref(),
            Some("/var/lib/app")
        );
        let sandbox = plan.launch.sandbox.clone().unwrap();
        assert_eq!(sandbox.hostname.as_deref(), Some("web-0"));
        assert_eq!(
            sandbox.mounts,
            vec![
                BindMount {
                    source: claim,
                    target: "/var/lib/app".into(),
                    read_only: false
                },
                BindMount {
                    source: crate::volumes::empty_dir(
                        Path::new("/data/pods/shop_web-0_u-1"),
                        "scratch"
                    ),
                    target: "/scratch".into(),
                    read_only: true
                },
            ]
        );

        // The container's own variable wins over the volume variable.
        c.env = vec![v1::EnvVar {
            name: "TWINSET_MOUNT_VAR_LIB_APP".into(),
            value: "mine".into(),
            ..Default::default()
        }];
        let plan = plan_of(&pod(vec![c]), 0, true).unwrap();
        assert_eq!(
            env_of(&plan, "TWINSET_MOUNT_VAR_LIB_APP").as_deref(),
            Some("mine")
        );
    }

    #[test]
    fn host_network_keeps_the_node_hostname_and_own_tmpdir_is_kept() {
        let mut c = container("app");
        c.env = vec![v1::EnvVar {
            name: "TMPDIR".into(),
            value: "/var/tmp".into(),
            ..Default::default()
        }];
        let mut p = pod(vec![c]);
        p.spec.as_mut().unwrap().host_network = true;
        let plan = plan_of(&p, 0, true).unwrap();
        assert_eq!(plan.launch.sandbox.as_ref().unwrap().hostname, None);
        assert_eq!(plan.tmp_dir, None);
        assert_eq!(env_of(&plan, "TMPDIR").as_deref(), Some("/var/tmp"));
    }

    #[test]
    fn containers_join_the_pods_network_namespace_unless_the_pod_uses_the_hosts() {
        let ns = Path::new("/data/netns/u-1");
        let mut p = pod(vec![container("app")]);
        let plan = plan_in(&p, 0, true, Some(ns)).unwrap();
        assert_eq!(
            plan.launch.sandbox.unwrap().netns.as_deref(),
            Some(ns),
            "the pod's own namespace"
        );
        p.spec.as_mut().unwrap().host_network = true;
        let plan = plan_in(&p, 0, true, Some(ns)).unwrap();
        assert_eq!(
            plan.launch.sandbox.unwrap().netns,
            None,
            "hostNetwork: the node's namespace"
        );
    }

    #[test]
    fn pod_files_are_bound_unless_the_container_mounts_its_own() {
        let files = || PodFiles {
            hosts: Some("/d/etc/hosts".into()),
            resolv_conf: Some("/d/etc/resolv.conf".into()),
        };
        let mut sb = Sandbox::default();
        add_pod_files(&mut sb, files());
        let targets: Vec<_> = sb.mounts.iter().map(|m| m.target.clone()).collect();
        assert_eq!(
            targets,
            [
                PathBuf::from("/etc/hosts"),
                PathBuf::from("/etc/resolv.conf")
            ]
        );

        let own = BindMount {
            source: "/mine".into(),
            target: "/etc/hosts".into(),
            read_only: true,
        };
        let mut sb = Sandbox {
            netns: None,
            hostname: None,
            mounts: vec![own.clone()],
        };
        add_pod_files(&mut sb, files());
        assert_eq!(sb.mounts[0], own);
        assert_eq!(sb.mounts.len(), 2);
        assert_eq!(sb.mounts[1].target, Path::new("/etc/resolv.conf"));

        let mut sb = Sandbox::default();
        add_pod_files(
            &mut sb,
            PodFiles {
                hosts: None,
                resolv_conf: None,
            },
        );
        assert!(sb.mounts.is_empty(), "hostNetwork without cluster DNS");
    }

    #[test]
    fn the_not_isolated_warning_names_each_mount() {
        let mut c = container("app");
        c.volume_mounts = vec![mount("data", "/var/lib/app", false)];
        let plan = plan_of(&pod(vec![c]), 0, false).unwrap();
        let msg = not_isolated_message("app", &plan.mounts, "not root").unwrap();
        assert!(
            msg.starts_with(
                "volume mounts of container app are not isolated (not root): /var/lib/app is at "
            ),
            "{msg}"
        );
        assert!(msg.contains("($TWINSET_MOUNT_VAR_LIB_APP)"), "{msg}");
        assert_eq!(not_isolated_message("app", &[], "not root"), None);
    }
}
