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

use std::ffi::{CStr, CString, OsStr};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
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

/// The kernel calls pod isolation needs. Implementations called from
/// [`Plan::apply`] run between fork and exec: they must not allocate, lock or log.
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
}

/// The real system calls (through nix, which passes `CStr`s straight to libc).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }

    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        nix::unistd::sethostname(OsStr::from_bytes(name.to_bytes()))
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }
}

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
    let child_sys = Arc::clone(&sys);
    // SAFETY: runs in the forked child before exec; Plan::apply only makes raw system
    // calls on strings built before the fork and allocates nothing.
    unsafe {
        cmd.pre_exec(move || probe.apply(child_sys.as_ref()).map_err(io::Error::from));
    }
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
    /// mounts, so a working directory inside a volume is the volume).
    pub fn build(sandbox: &Sandbox, working_dir: &Path) -> Result<Plan, SandboxError> {
        let mut flags = CloneFlags::CLONE_NEWNS;
        if sandbox.hostname.is_some() {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        let mut ops = vec![
            Op::Unshare(flags),
            Op::Mount {
                source: None,
                target: c"/".to_owned(),
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            },
        ];
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
            hostname: Some("mysql-db-0".into()),
            mounts: vec![
                bind("/d/conf", "/var/lib/mysql/conf", true),
                bind("/d/claim", "/var/lib/mysql", false),
                bind("/d/pod/hosts", "/etc/hosts", false),
            ],
        };
        let plan = Plan::build(&sandbox, Path::new("/var/lib/mysql")).unwrap();
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
    fn host_network_keeps_the_node_hostname() {
        let plan = Plan::build(&Sandbox::default(), Path::new("/")).unwrap();
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
            hostname: Some("h".into()),
            mounts: vec![bind("/a", "/b", false)],
        };
        let plan = Plan::build(&sandbox, Path::new("/")).unwrap();
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
                hostname: None,
                mounts: vec![bind("/a", t, false)],
            };
            assert!(matches!(
                Plan::build(&sandbox, Path::new("/")),
                Err(SandboxError::BadTarget(_))
            ));
        }
        let sandbox = Sandbox {
            hostname: Some("a\0b".into()),
            mounts: vec![],
        };
        assert!(matches!(
            Plan::build(&sandbox, Path::new("/")),
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
