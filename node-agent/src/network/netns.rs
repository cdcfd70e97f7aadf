//! Network namespaces without fork: a namespace is made by a short-lived thread that
//! unshares its own network namespace and bind-mounts it onto a file (the pin), so it
//! lives on without any process in it; work inside one runs on a fresh thread that
//! joins it first. Network namespaces are per thread, so the agent's other threads are
//! never moved.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, statfs, NSFS_MAGIC};

use super::NetworkError;

/// The calling thread's network namespace, as the kernel shows it.
const THREAD_NET_NS: &str = "/proc/thread-self/ns/net";

/// How many stacked mounts [`unpin`] takes off one pin at most (one is the rule; more
/// only after a race of two pinners).
const MAX_STACKED_MOUNTS: usize = 16;

fn io_error(what: &'static str, path: &Path, source: io::Error) -> NetworkError {
    NetworkError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a new, empty network namespace (only `lo`, down) pinned at `path`: an empty
/// file (its directory made if missing) with the namespace bind-mounted onto it. Does
/// nothing when `path` already pins one.
pub fn pin_new(path: &Path) -> Result<(), NetworkError> {
    if is_pinned(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_error("create the directory of", dir, e))?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| io_error("create the namespace pin", path, e))?;
    let target = path.to_path_buf();
    let pinned = on_thread(path, move || -> Result<(), NetworkError> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| io_error("unshare a network namespace for", &target, e.into()))?;
        mount(
            Some(THREAD_NET_NS),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io_error("bind-mount a network namespace onto", &target, e.into()))
    })
    .and_then(|r| r);
    if pinned.is_err() && !is_pinned(path) {
        // Leave no empty pin behind; the error says what went wrong.
        let _ = fs::remove_file(path);
    }
    pinned
}

/// Releases the namespace pinned at `path` (lazy unmount: it goes away when nothing
/// uses it any more) and removes the file. A missing file is not an error.
pub fn unpin(path: &Path) -> Result<(), NetworkError> {
    for _ in 0..MAX_STACKED_MOUNTS {
        if !is_pinned(path) {
            break;
        }
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| io_error("unmount the network namespace at", path, e.into()))?;
    }
    if is_pinned(path) {
        return Err(io_error(
            "unmount the network namespace at",
            path,
            io::Error::other(format!("still mounted after {MAX_STACKED_MOUNTS} unmounts")),
        ));
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove the namespace pin", path, e)),
    }
}

/// Whether `path` is a pinned namespace (the file is a mount of the kernel's nsfs).
pub fn is_pinned(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Runs `f` on a fresh thread that has joined the network namespace pinned at `path`
/// (e.g. to open a socket that lives there: a socket stays in the namespace it was made
/// in) and returns its result. Blocks the caller until `f` returns, so `f` should be
/// short. A panic in `f` is resumed in the caller.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetworkError> {
    let ns = File::open(path).map_err(|e| io_error("open the network namespace", path, e))?;
    let is_ns = fstatfs(&ns)
        .map_err(|e| io_error("inspect the network namespace", path, e.into()))?
        .filesystem_type()
        == NSFS_MAGIC;
    if !is_ns {
        return Err(io_error(
            "join the network namespace",
            path,
            io::Error::other("not a pinned network namespace"),
        ));
    }
    let owned: PathBuf = path.to_path_buf();
    on_thread(path, move || {
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| io_error("join the network namespace", &owned, e.into()))?;
        Ok(f())
    })
    .and_then(|r| r)
}

/// Runs `f` on a new thread and waits for it; a panic there is resumed here.
fn on_thread<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetworkError> {
    let thread = std::thread::Builder::new()
        .name("netns".to_string())
        .spawn(f)
        .map_err(|e| io_error("start a thread for the network namespace", path, e))?;
    match thread.join() {
        Ok(v) => Ok(v),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Test isolation for the root tests of bridge mode: each runs on a thread of its own in
/// a fresh network namespace (only `lo`) and a private mount namespace, so nothing of
/// the host's links, routes or mounts is touched, with a temporary data directory whose
/// mounts are taken off when the test ends, failed or not.
#[cfg(test)]
pub(crate) mod isolation {
    use std::future::Future;
    use std::path::{Path, PathBuf};

    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{unshare, CloneFlags};

    /// Runs `f` isolated (see the module) with a temporary directory; fails, saying
    /// why, when not root.
    pub(crate) fn isolated<T: Send + 'static>(f: impl FnOnce(&Path) -> T + Send + 'static) -> T {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root: it makes network namespaces, links and mounts (run the suite as root)"
        );
        let thread = std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
                .expect("unshare a network and a mount namespace for the test");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make the test's mounts private");
            let dir = tempfile::tempdir().expect("a temporary directory");
            let guard = Unmount(dir.path().to_path_buf());
            let out = f(dir.path());
            drop(guard);
            out
        });
        match thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// [`isolated`] with a current-thread tokio runtime running the future `f` makes.
    pub(crate) fn isolated_async<T, F>(f: impl FnOnce(PathBuf) -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: Future<Output = T>,
    {
        isolated(move |dir| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(f(dir.to_path_buf()))
        })
    }

    /// Takes every mount under its directory off (deepest first) when dropped.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let Ok(info) = std::fs::read_to_string("/proc/thread-self/mountinfo") else {
                return;
            };
            let mut points: Vec<PathBuf> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(PathBuf::from)
                .filter(|p| p.starts_with(&self.0))
                .collect();
            points.sort();
            for p in points.iter().rev() {
                let _ = umount2(p, MntFlags::MNT_DETACH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::isolation::isolated;
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The inode of the network namespace of a thread in the namespace pinned at `pin`.
    fn ns_inode(pin: &Path) -> u64 {
        run_in(pin, || fs::metadata(THREAD_NET_NS).map(|m| m.ino()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn root_pin_run_in_and_unpin() {
        isolated(|dir| {
            let pin = dir.join("netns").join("pod-a");
            assert!(!is_pinned(&pin));
            pin_new(&pin).unwrap();
            assert!(is_pinned(&pin));
            // Idempotent: the same namespace stays.
            let first = ns_inode(&pin);
            pin_new(&pin).unwrap();
            assert_eq!(ns_inode(&pin), first);
            // A second pin is another namespace, and neither is the caller's.
            let other = dir.join("netns").join("pod-b");
            pin_new(&other).unwrap();
            assert_ne!(ns_inode(&other), first);
            assert_ne!(fs::metadata(THREAD_NET_NS).unwrap().ino(), first);
            // It has only `lo`.
            let dev = run_in(&pin, || fs::read_to_string("/proc/thread-self/net/dev"))
                .unwrap()
                .unwrap();
            let names: Vec<&str> = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(str::trim)
                .collect();
            assert_eq!(names, ["lo"]);

            unpin(&pin).unwrap();
            assert!(!is_pinned(&pin));
            assert!(!pin.exists());
            // Missing is fine.
            unpin(&pin).unwrap();
            // The other pin is untouched.
            assert!(is_pinned(&other));
            unpin(&other).unwrap();
            // Joining something that is not a pin is refused, naming the path.
            fs::write(&pin, b"").unwrap();
            let e = run_in(&pin, || ()).unwrap_err();
            assert!(e.to_string().contains("pod-a"), "{e}");
            assert!(
                e.to_string().contains("not a pinned network namespace"),
                "{e}"
            );
            // A leftover empty file (a crash between creating and mounting) is pinned
            // over, and unpin removes it when never mounted.
            pin_new(&pin).unwrap();
            assert!(is_pinned(&pin));
            unpin(&pin).unwrap();
            fs::write(&pin, b"").unwrap();
            unpin(&pin).unwrap();
            assert!(!pin.exists());
        });
    }
}
