//! Every `unsafe` block of the agent, in one place (the crate denies unsafe code
//! elsewhere): the real system calls behind [`Syscall`] that need raw file
//! descriptors, running a [`Plan`] between fork and exec, and opening a pidfd. Each
//! block says why it is sound.

#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::sync::Arc;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::sandbox::{Plan, Syscall};

/// The real system calls (through nix where it takes what we have, else libc).
/// Every method is one system call: async-signal-safe, no allocation, no lock, as
/// [`Syscall`] requires of code that runs between fork and exec.
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

    fn setsid(&self) -> Result<(), Errno> {
        nix::unistd::setsid().map(drop)
    }

    fn write(&self, fd: RawFd, bytes: &[u8]) -> Result<(), Errno> {
        // SAFETY: write(2) reads `bytes.len()` bytes from a live slice and touches no
        // other memory; a stale or closed fd makes it fail with EBADF, nothing worse.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    fn setns(&self, fd: RawFd, flags: CloneFlags) -> Result<(), Errno> {
        // SAFETY: setns(2) takes an fd and flags and shares no memory with us; a bad
        // fd makes it fail with EBADF or EINVAL.
        if unsafe { libc::setns(fd, flags.bits()) } < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
}

/// Runs `plan` through `sys` in the child of `cmd`, after fork and before exec.
pub(crate) fn before_exec(cmd: &mut tokio::process::Command, plan: Plan, sys: Arc<dyn Syscall>) {
    // SAFETY: the closure runs in the forked child, where only async-signal-safe
    // calls are allowed. Plan::apply walks operations whose C strings and fds were
    // all made in the parent before the fork, allocates nothing, and calls only
    // `sys`, whose contract (see Syscall) is one system call per method with no
    // allocation or lock; io::Error::from(Errno) stores the raw code and does not
    // allocate either.
    unsafe {
        cmd.pre_exec(move || plan.apply(sys.as_ref()).map_err(io::Error::from));
    }
}

/// [`before_exec`] for a `std` command (the namespace probe at startup).
pub(crate) fn before_exec_std(cmd: &mut std::process::Command, plan: Plan, sys: Arc<dyn Syscall>) {
    // SAFETY: as in before_exec: the closure only applies a plan built before the
    // fork through a Syscall whose methods are single, allocation-free system calls.
    unsafe {
        cmd.pre_exec(move || plan.apply(sys.as_ref()).map_err(io::Error::from));
    }
}

/// A pidfd for `pid`, registered with the tokio reactor (readable once the process
/// exits), when the kernel has pidfds.
pub(crate) fn pidfd(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    let fd = pidfd_open(pid)?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it and keeps it open
    // and unchanged (never closed or replaced behind its back) for its whole lifetime.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1; no
    // memory is shared with the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = RawFd::try_from(fd).ok()?;
    // SAFETY: the kernel just returned this fd to us, it is open, and nothing else
    // owns it: the OwnedFd becomes its only owner and closes it once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
