//! Pod isolation on the process runtime (as root): each container process gets a
//! private mount namespace in which every volume (and the pod's own `/etc/hosts` and
//! `/etc/resolv.conf`) is bind-mounted at its target, and a private UTS namespace with
//! the pod's hostname.
//!
//! The kernel calls sit behind the [`Syscall`] trait (youki's seam): [`Plan::apply`]
//! runs in the forked child before exec and only walks a list of operations whose
//! C strings were all built in the parent, so it allocates nothing and stays
//! async-signal-safe. Tests inject a recording [`Syscall`] to check the sequence
//! without root; [`LinuxSyscall`] makes the real calls.

use std::ffi::{CStr, CString};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

/// Errors preparing a sandbox (in the agent, before the fork).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A path or the hostname contains a NUL byte.
    #[error("{what} {value:?} contains a NUL byte")]
    Nul {
        /// What the string is.
        what: &'static str,
        /// The string.
        value: String,
    },
    /// A mount target is not an absolute path without `..`.
    #[error("mount target {0} must be an absolute path without '..'")]
    BadTarget(PathBuf),
    /// A mount source is missing or unreadable.
    #[error("mount source {path}: {source}")]
    Source {
        /// The source path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A mount target could not be created.
    #[error("cannot create mount target {path}: {source}")]
    Target {
        /// The path created (on the node, or inside an outer mount's source).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The kernel calls a container's child process makes between fork and exec: its own
/// session, joining its cgroups, pod isolation, entering a container's namespaces
/// (exec probes). Implementations called from [`Plan::apply`] run between fork and
/// exec: each method must be one async-signal-safe system call that does not
/// allocate, lock or log ([`LinuxSyscall`]).
pub trait Syscall: Send + Sync {
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno>;
    /// mount(2).
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// setsid(2).
    fn setsid(&self) -> Result<(), Errno>;
    /// write(2) of `bytes` to `fd`.
    fn write(&self, fd: RawFd, bytes: &[u8]) -> Result<(), Errno>;
    /// setns(2).
    fn setns(&self, fd: RawFd, flags: CloneFlags) -> Result<(), Errno>;
}

pub use super::sys::LinuxSyscall;

/// Whether this agent can isolate pods, and with which system calls.
#[derive(Clone)]
pub enum Isolation {
    /// Mount and UTS namespaces work: pods are isolated through this [`Syscall`].
    Available(Arc<dyn Syscall>),
    /// They do not (not root, or unshare refused): why, for events and logs.
    Unavailable(String),
}

impl std::fmt::Debug for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Isolation::Available(_) => f.write_str("Available"),
            Isolation::Unavailable(why) => f.debug_tuple("Unavailable").field(why).finish(),
        }
    }
}

impl Isolation {
    /// Whether pods can be isolated.
    pub fn available(&self) -> bool {
        matches!(self, Isolation::Available(_))
    }

    /// Why pods cannot be isolated (None when they can).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Isolation::Available(_) => None,
            Isolation::Unavailable(why) => Some(why),
        }
    }
}

/// Finds out whether pods can be isolated: the agent must be root, and a probe child
/// must be able to create mount and UTS namespaces (it does so, makes its mounts
/// private and exits; nothing on the node changes).
pub fn detect(sys: Arc<dyn Syscall>) -> Isolation {
    if !nix::unistd::Uid::effective().is_root() {
        return Isolation::Unavailable("the agent does not run as root".into());
    }
    let probe = Plan::probe();
    let mut cmd = std::process::Command::new("true");
    cmd.env_clear()
        .env("PATH", crate::env::DEFAULT_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    super::sys::before_exec_std(&mut cmd, probe, Arc::clone(&sys));
    match cmd.status() {
        Ok(s) if s.success() => Isolation::Available(sys),
        Ok(s) => Isolation::Unavailable(format!("the namespace probe failed ({s})")),
        Err(e) => Isolation::Unavailable(format!("cannot create mount and UTS namespaces: {e}")),
    }
}

/// One bind mount in a pod's mount namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// The directory or file on the node.
    pub source: PathBuf,
    /// Where the container sees it (absolute).
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a container's sandbox looks like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// The hostname in a private UTS namespace; None keeps the node's (hostNetwork).
    pub hostname: Option<String>,
    /// Bind mounts, in any order (parents are mounted before what they contain).
    pub mounts: Vec<BindMount>,
    /// The pod's pinned network namespace (bridge mode), joined before anything else;
    /// None shares the node's.
    pub netns: Option<PathBuf>,
}

impl Sandbox {
    /// The mounts ordered so that a mount comes after every mount whose target
    /// contains its target (a stable sort by target depth).
    pub fn ordered_mounts(&self) -> Vec<BindMount> {
        let mut m = self.mounts.clone();
        m.sort_by_key(|b| b.target.components().count());
        m
    }
}

/// One step of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// unshare(flags).
    Unshare(CloneFlags),
    /// mount(source, target, NULL, flags, NULL).
    Mount {
        /// Source (None for propagation and remount calls).
        source: Option<CString>,
        /// Target.
        target: CString,
        /// Flags.
        flags: MsFlags,
    },
    /// sethostname(name).
    SetHostname(CString),
    /// chdir(path).
    Chdir(CString),
    /// setsid().
    Setsid,
    /// write(fd, bytes): e.g. "0" into a cgroup's `cgroup.procs`, joining it. The fd
    /// must stay open until the child has forked.
    Write {
        /// The fd (opened in the parent).
        fd: RawFd,
        /// What is written.
        bytes: &'static [u8],
    },
    /// setns(fd, flags): joins the namespace `fd` refers to.
    Setns {
        /// An open `/proc/<pid>/ns/<name>` file (kept open until the child forked).
        fd: RawFd,
        /// The namespace type.
        flags: CloneFlags,
    },
}

/// The system calls that isolate one container, built before the fork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    ops: Vec<Op>,
}

fn cstring(what: &'static str, bytes: &[u8]) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Nul {
        what,
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

fn cpath(what: &'static str, p: &Path) -> Result<CString, SandboxError> {
    cstring(what, p.as_os_str().as_bytes())
}

fn check_target(t: &Path) -> Result<(), SandboxError> {
    if !t.is_absolute() || t.components().any(|c| c == Component::ParentDir) {
        return Err(SandboxError::BadTarget(t.to_path_buf()));
    }
    Ok(())
}

impl Plan {
    /// The probe [`detect`] runs: new mount and UTS namespaces, mounts made private.
    fn probe() -> Plan {
        Plan {
            ops: vec![
                Op::Unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS),
                Op::Mount {
                    source: None,
                    target: c"/".to_owned(),
                    flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                },
            ],
        }
    }

    /// The plan for `sandbox`, ending with a chdir to `working_dir` (after the
    /// mounts, so a working directory inside a volume is the volume). `netns` is the
    /// open pin of the pod's network namespace (kept open by the caller until the fork),
    /// which is joined first.
    pub fn build(
        sandbox: &Sandbox,
        working_dir: &Path,
        netns: Option<RawFd>,
    ) -> Result<Plan, SandboxError> {
        let mut flags = CloneFlags::CLONE_NEWNS;
        if sandbox.hostname.is_some() {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        let mut ops: Vec<Op> = netns
            .map(|fd| Op::Setns {
                fd,
                flags: CloneFlags::CLONE_NEWNET,
            })
            .into_iter()
            .collect();
        ops.extend([
            Op::Unshare(flags),
            Op::Mount {
                source: None,
                target: c"/".to_owned(),
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            },
        ]);
        for m in sandbox.ordered_mounts() {
            check_target(&m.target)?;
            let target = cpath("mount target", &m.target)?;
            ops.push(Op::Mount {
                source: Some(cpath("mount source", &m.source)?),
                target: target.clone(),
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            });
            if m.read_only {
                ops.push(Op::Mount {
                    source: None,
                    target,
                    flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                });
            }
        }
        if let Some(h) = &sandbox.hostname {
            ops.push(Op::SetHostname(cstring("hostname", h.as_bytes())?));
        }
        ops.push(Op::Chdir(cpath("working directory", working_dir)?));
        Ok(Plan { ops })
    }

    /// A container's own session (setsid, so its pid is its process group), then
    /// joining the cgroups whose `cgroup.procs` files are open as `cgroup_procs`.
    pub fn session(cgroup_procs: &[RawFd]) -> Plan {
        let mut ops = vec![Op::Setsid];
        ops.extend(cgroup_procs.iter().map(|fd| Op::Write {
            fd: *fd,
            bytes: b"0",
        }));
        Plan { ops }
    }

    /// Entering a running container (exec probes): join the namespaces open as
    /// `namespaces` (UTS before mount: the mount namespace changes what paths mean),
    /// then chdir to `working_dir`.
    pub fn enter(
        namespaces: &[(RawFd, CloneFlags)],
        working_dir: &Path,
    ) -> Result<Plan, SandboxError> {
        let mut ops: Vec<Op> = namespaces
            .iter()
            .map(|(fd, flags)| Op::Setns {
                fd: *fd,
                flags: *flags,
            })
            .collect();
        ops.push(Op::Chdir(cpath("working directory", working_dir)?));
        Ok(Plan { ops })
    }

    /// This plan followed by `next`.
    pub fn then(mut self, next: Plan) -> Plan {
        self.ops.extend(next.ops);
        self
    }

    /// The steps, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Makes the calls in order, stopping at the first failure. Async-signal-safe
    /// as long as `sys` is: it allocates nothing.
    pub fn apply(&self, sys: &dyn Syscall) -> Result<(), Errno> {
        for op in &self.ops {
            match op {
                Op::Unshare(f) => sys.unshare(*f)?,
                Op::Mount {
                    source,
                    target,
                    flags,
                } => sys.mount(source.as_deref(), target, None, *flags, None)?,
                Op::SetHostname(h) => sys.sethostname(h)?,
                Op::Chdir(p) => sys.chdir(p)?,
                Op::Setsid => sys.setsid()?,
                Op::Write { fd, bytes } => sys.write(*fd, bytes)?,
                Op::Setns { fd, flags } => sys.setns(*fd, *flags)?,
            }
        }
        Ok(())
    }
}

/// Where the target of `m` is created on the node before the fork: under the source
/// of the deepest other mount that contains it (that mount hides the node's path),
/// else at the target itself.
fn creation_path(m: &BindMount, all: &[BindMount]) -> PathBuf {
    let outer = all
        .iter()
        .filter(|o| o.target != m.target && m.target.starts_with(&o.target))
        .max_by_key(|o| o.target.components().count());
    match outer.and_then(|o| Some((o, m.target.strip_prefix(&o.target).ok()?))) {
        // Sources are paths on the node, so the outer source is where it shows.
        Some((o, rest)) => o.source.join(rest),
        None => m.target.clone(),
    }
}

/// Creates each missing mount target (a directory for a directory source, an empty
/// file for a file source), so the bind mounts in the child cannot fail for want of
/// one. Runs in the agent before the fork.
pub fn prepare_targets(sandbox: &Sandbox) -> Result<(), SandboxError> {
    let all = sandbox.ordered_mounts();
    for m in &all {
        check_target(&m.target)?;
        let meta = std::fs::metadata(&m.source).map_err(|source| SandboxError::Source {
            path: m.source.clone(),
            source,
        })?;
        let path = creation_path(m, &all);
        let err = |source| SandboxError::Target {
            path: path.clone(),
            source,
        };
        if meta.is_dir() {
            if !path.is_dir() {
                std::fs::create_dir_all(&path).map_err(err)?;
            }
        } else if !path.exists() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A recorded system call.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        Unshare(CloneFlags),
        Mount(Option<String>, String, MsFlags),
        SetHostname(String),
        Chdir(String),
        Setsid,
        Write(RawFd, Vec<u8>),
        Setns(RawFd, CloneFlags),
    }

    /// Records calls; fails the call whose number is `fail_at` with EPERM.
    #[derive(Default)]
    pub struct Recording {
        pub calls: Mutex<Vec<Call>>,
        pub fail_at: Option<usize>,
    }

    impl Recording {
        fn record(&self, c: Call) -> Result<(), Errno> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(c);
            if Some(calls.len() - 1) == self.fail_at {
                return Err(Errno::EPERM);
            }
            Ok(())
        }
    }

    fn s(c: &CStr) -> String {
        c.to_string_lossy().into_owned()
    }

    impl Syscall for Recording {
        fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
            self.record(Call::Unshare(flags))
        }
        fn mount(
            &self,
            source: Option<&CStr>,
            target: &CStr,
            _fstype: Option<&CStr>,
            flags: MsFlags,
            _data: Option<&CStr>,
        ) -> Result<(), Errno> {
            self.record(Call::Mount(source.map(s), s(target), flags))
        }
        fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
            self.record(Call::SetHostname(s(name)))
        }
        fn chdir(&self, path: &CStr) -> Result<(), Errno> {
            self.record(Call::Chdir(s(path)))
        }
        fn setsid(&self) -> Result<(), Errno> {
            self.record(Call::Setsid)
        }
        fn write(&self, fd: RawFd, bytes: &[u8]) -> Result<(), Errno> {
            self.record(Call::Write(fd, bytes.to_vec()))
        }
        fn setns(&self, fd: RawFd, flags: CloneFlags) -> Result<(), Errno> {
            self.record(Call::Setns(fd, flags))
        }
    }

    fn bind(source: &str, target: &str, read_only: bool) -> BindMount {
        BindMount {
            source: source.into(),
            target: target.into(),
            read_only,
        }
    }

    #[test]
    fn plan_unshares_privatises_binds_parents_first_then_names_and_chdirs() {
        let sandbox = Sandbox {
            netns: None,
            hostname: Some("mysql-db-0".into()),
            mounts: vec![
                bind("/d/conf", "/var/lib/mysql/conf", true),
                bind("/d/claim", "/var/lib/mysql", false),
                bind("/d/pod/hosts", "/etc/hosts", false),
            ],
        };
        let plan = Plan::build(&sandbox, Path::new("/var/lib/mysql"), None).unwrap();
        let rec = Recording::default();
        plan.apply(&rec).unwrap();
        let bind_rec = MsFlags::MS_BIND | MsFlags::MS_REC;
        assert_eq!(
            *rec.calls.lock().unwrap(),
            vec![
                Call::Unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS),
                Call::Mount(None, "/".into(), MsFlags::MS_REC | MsFlags::MS_PRIVATE),
                Call::Mount(Some("/d/pod/hosts".into()), "/etc/hosts".into(), bind_rec),
                Call::Mount(Some("/d/claim".into()), "/var/lib/mysql".into(), bind_rec),
                Call::Mount(
                    Some("/d/conf".into()),
                    "/var/lib/mysql/conf".into(),
                    bind_rec
                ),
                Call::Mount(
                    None,
                    "/var/lib/mysql/conf".into(),
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
                ),
                Call::SetHostname("mysql-db-0".into()),
                Call::Chdir("/var/lib/mysql".into()),
            ]
        );
    }

    #[test]
    fn session_and_enter_plans() {
        let rec = Recording::default();
        Plan::session(&[7, 8])
            .then(
                Plan::enter(
                    &[(3, CloneFlags::CLONE_NEWUTS), (4, CloneFlags::CLONE_NEWNS)],
                    Path::new("/w"),
                )
                .unwrap(),
            )
            .apply(&rec)
            .unwrap();
        assert_eq!(
            *rec.calls.lock().unwrap(),
            vec![
                Call::Setsid,
                Call::Write(7, b"0".to_vec()),
                Call::Write(8, b"0".to_vec()),
                Call::Setns(3, CloneFlags::CLONE_NEWUTS),
                Call::Setns(4, CloneFlags::CLONE_NEWNS),
                Call::Chdir("/w".into()),
            ]
        );
    }

    #[test]
    fn a_pod_network_namespace_is_joined_before_anything_else() {
        let sandbox = Sandbox {
            hostname: Some("web-0".into()),
            mounts: vec![],
            netns: Some("/d/netns/uid".into()),
        };
        let plan = Plan::build(&sandbox, Path::new("/"), Some(9)).unwrap();
        let rec = Recording::default();
        plan.apply(&rec).unwrap();
        let calls = rec.calls.lock().unwrap();
        assert_eq!(calls[0], Call::Setns(9, CloneFlags::CLONE_NEWNET));
        assert_eq!(
            calls[1],
            Call::Unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        );
    }

    #[test]
    fn host_network_keeps_the_node_hostname() {
        let plan = Plan::build(&Sandbox::default(), Path::new("/"), None).unwrap();
        assert_eq!(
            plan.ops()[0],
            Op::Unshare(CloneFlags::CLONE_NEWNS),
            "no UTS namespace"
        );
        assert!(!plan.ops().iter().any(|o| matches!(o, Op::SetHostname(_))));
    }

    #[test]
    fn a_failing_call_stops_the_plan() {
        let sandbox = Sandbox {
            netns: None,
            hostname: Some("h".into()),
            mounts: vec![bind("/a", "/b", false)],
        };
        let plan = Plan::build(&sandbox, Path::new("/"), None).unwrap();
        let rec = Recording {
            fail_at: Some(2),
            ..Default::default()
        };
        assert_eq!(plan.apply(&rec), Err(Errno::EPERM));
        assert_eq!(
            rec.calls.lock().unwrap().len(),
            3,
            "nothing after the failure"
        );
    }

    #[test]
    fn bad_targets_and_nul_bytes_are_refused() {
        for t in ["relative/path", "/a/../etc"] {
            let sandbox = Sandbox {
                netns: None,
                hostname: None,
                mounts: vec![bind("/a", t, false)],
            };
            assert!(matches!(
                Plan::build(&sandbox, Path::new("/"), None),
                Err(SandboxError::BadTarget(_))
            ));
        }
        let sandbox = Sandbox {
            netns: None,
            hostname: Some("a\0b".into()),
            mounts: vec![],
        };
        assert!(matches!(
            Plan::build(&sandbox, Path::new("/"), None),
            Err(SandboxError::Nul { .. })
        ));
    }

    #[test]
    fn targets_are_created_on_the_node_or_inside_the_outer_source() {
        let t = tempfile::tempdir().unwrap();
        let p = |s: &str| t.path().join(s);
        std::fs::create_dir_all(p("claim")).unwrap();
        std::fs::create_dir_all(p("conf")).unwrap();
        std::fs::write(p("hosts"), "x").unwrap();
        let sandbox = Sandbox {
            netns: None,
            hostname: None,
            mounts: vec![
                BindMount {
                    source: p("conf"),
                    target: p("root/var/lib/mysql/conf"),
                    read_only: false,
                },
                BindMount {
                    source: p("claim"),
                    target: p("root/var/lib/mysql"),
                    read_only: false,
                },
                BindMount {
                    source: p("hosts"),
                    target: p("root/etc/hosts"),
                    read_only: false,
                },
            ],
        };
        prepare_targets(&sandbox).unwrap();
        assert!(p("root/var/lib/mysql").is_dir());
        assert!(
            p("claim/conf").is_dir(),
            "a nested target is made inside the outer mount's source"
        );
        assert!(!p("root/var/lib/mysql/conf").exists());
        assert!(p("root/etc/hosts").is_file());
        let missing = Sandbox {
            netns: None,
            hostname: None,
            mounts: vec![BindMount {
                source: p("nope"),
                target: p("root/x"),
                read_only: false,
            }],
        };
        assert!(matches!(
            prepare_targets(&missing),
            Err(SandboxError::Source { .. })
        ));
    }

    #[test]
    fn without_root_isolation_is_unavailable_with_a_reason() {
        let iso = detect(Arc::new(LinuxSyscall));
        if nix::unistd::Uid::effective().is_root() {
            // As root the probe decides; a refusal names the namespaces.
            if let Some(why) = iso.reason() {
                assert!(why.contains("namespace"), "{why}");
            }
        } else {
            assert_eq!(iso.reason(), Some("the agent does not run as root"));
        }
    }
}
