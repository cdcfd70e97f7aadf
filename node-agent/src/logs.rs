//! Container logs, rotated as the kubelet rotates them, and the `NodeAgent.Logs`
//! gRPC service that streams them.
//!
//! Layout, in the pod's folder (`<data_dir>/pods/<ns>_<pod>_<uid>/`): each run of a
//! container is an *instance* numbered from 0; instance N writes into the FIFO
//! `<container>_<N>.fifo`, which a writer thread of the agent drains into
//! `<container>_<N>.log`. When that file would pass `max_size` it becomes
//! `<container>_<N>.log.1` (older ones shift to `.2`, …; the oldest beyond
//! `max_files - 1` is dropped), so one instance never keeps more than
//! `max_size × max_files` bytes. Only the current and the previous instance are kept
//! (`logs --previous` reads the latter).
//!
//! The container gets the FIFO opened read-write, so it never sees EPIPE or SIGPIPE:
//! while the agent is away (restarting) its output waits in the pipe (1 MiB), and a
//! restarted agent drains it again when it adopts the container ([`Registry::resume_output`]).
//!
//! The service reads across rotation (the rotated files and the live one as one
//! stream), follows growth, rotation and the next instance of the container, and does
//! all its file work on blocking threads, never on the async workers.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use twinset_proto::v1::{node_agent_server::NodeAgent, LogChunk, LogsRequest};

/// How often a followed log is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 32 * 1024;
/// The pipe buffer a container may fill while no agent drains it.
const PIPE_SIZE: i32 = 1 << 20;
/// Stack of a log writer thread (it only copies bytes).
const WRITER_STACK: usize = 128 * 1024;

/// The folder of a pod's logs.
pub fn pod_dir(data_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// The live log file of instance `n` of a container.
pub fn instance_log(pod_dir: &Path, container: &str, n: u32) -> PathBuf {
    pod_dir.join(format!("{container}_{n}.log"))
}

/// The FIFO instance `n` of a container writes into (gone once it is drained).
pub fn instance_fifo(pod_dir: &Path, container: &str, n: u32) -> PathBuf {
    pod_dir.join(format!("{container}_{n}.fifo"))
}

/// Refused rotation settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    /// A zero size.
    #[error("--container-log-max-size must be greater than 0")]
    ZeroSize,
    /// Fewer than two files (the live one and one rotated).
    #[error("--container-log-max-files must be at least 2, got {0}")]
    TooFewFiles(u32),
}

/// How container logs rotate (`--container-log-max-size`, `--container-log-max-files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    max_size: u64,
    max_files: u32,
}

impl Rotation {
    /// The kubelet's defaults: 10 MiB, 5 files.
    pub const DEFAULT: Rotation = Rotation {
        max_size: 10 * 1024 * 1024,
        max_files: 5,
    };

    /// Files of at most `max_size` bytes, at most `max_files` per container instance
    /// (the live one included), as the kubelet counts them.
    pub fn new(max_size: u64, max_files: u32) -> Result<Rotation, RotationError> {
        if max_size == 0 {
            return Err(RotationError::ZeroSize);
        }
        if max_files < 2 {
            return Err(RotationError::TooFewFiles(max_files));
        }
        Ok(Rotation {
            max_size,
            max_files,
        })
    }

    /// Largest size of one file.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Most files per instance.
    pub fn max_files(&self) -> u32 {
        self.max_files
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation::DEFAULT
    }
}

/// A log file that rotates before it would pass the size limit.
struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl RotatingFile {
    fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            rotation,
        })
    }

    fn rotated(&self, k: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{k}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for k in (1..self.rotation.max_files - 1).rev() {
            match std::fs::rename(self.rotated(k), self.rotated(k + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.rotation.max_size {
                self.rotate()?;
            }
            let room = usize::try_from(self.rotation.max_size - self.size).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

/// Copies what the container writes into its FIFO to its rotating log file until
/// every writer (the container's process group) has closed it, then removes the FIFO.
fn drain(mut reader: File, fifo: PathBuf, mut out: RotatingFile) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut failed = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // On a write error the output is dropped but still drained: the
                // container must never block on a full pipe because of the disk.
                if let Err(e) = out.write(&buf[..n]) {
                    if !failed {
                        tracing::warn!(log = %out.path.display(), error = %e, "cannot write container log; output is dropped");
                        failed = true;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(fifo = %fifo.display(), error = %e, "reading container output failed");
                break;
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&fifo) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(fifo = %fifo.display(), error = %e, "cannot remove the log FIFO");
        }
    }
}

/// Opens `fifo` for reading without waiting for a writer, then makes reads block.
fn open_reader(fifo: &Path) -> std::io::Result<File> {
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)?;
    nix::fcntl::fcntl(
        &reader,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(std::io::Error::from)?;
    Ok(reader)
}

/// Starts the writer thread of instance `n`.
fn start_writer(
    pod_dir: &Path,
    container: &str,
    n: u32,
    rotation: Rotation,
) -> std::io::Result<()> {
    let fifo = instance_fifo(pod_dir, container, n);
    let reader = open_reader(&fifo)?;
    let out = RotatingFile::open(instance_log(pod_dir, container, n), rotation)?;
    std::thread::Builder::new()
        .name(format!("log-{container}"))
        .stack_size(WRITER_STACK)
        .spawn(move || drain(reader, fifo, out))?;
    Ok(())
}

/// The instances of `container` that have files in `pod_dir`, ascending.
fn list_instances(pod_dir: &Path, container: &str) -> std::io::Result<Vec<u32>> {
    let prefix = format!("{container}_");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(pod_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let name = e?.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((num, kind)) = rest.split_once('.') else {
            continue;
        };
        let known = kind == "fifo"
            || kind == "log"
            || kind
                .strip_prefix("log.")
                .is_some_and(|k| k.parse::<u32>().is_ok());
        if let (true, Ok(n)) = (known, num.parse::<u32>()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The files of instance `n`, oldest first: the rotated ones, then the live one.
fn instance_files(pod_dir: &Path, container: &str, n: u32) -> std::io::Result<Vec<PathBuf>> {
    let live = instance_log(pod_dir, container, n);
    let live_name = format!("{container}_{n}.log.");
    let mut rotated: Vec<u32> = std::fs::read_dir(pod_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_prefix(&live_name))
                .and_then(|k| k.parse::<u32>().ok())
        })
        .collect();
    rotated.sort_unstable_by(|a, b| b.cmp(a));
    let mut files: Vec<PathBuf> = rotated
        .into_iter()
        .map(|k| pod_dir.join(format!("{container}_{n}.log.{k}")))
        .collect();
    files.push(live);
    Ok(files)
}

/// Removes every file of instance `n`.
fn remove_instance(pod_dir: &Path, container: &str, n: u32) {
    let Ok(files) = instance_files(pod_dir, container, n) else {
        return;
    };
    for f in files
        .into_iter()
        .chain([instance_fifo(pod_dir, container, n)])
    {
        if let Err(e) = std::fs::remove_file(&f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %f.display(), error = %e, "cannot remove an old container log");
            }
        }
    }
}

/// The kept instances of `container`'s log (the previous and the current), oldest
/// first, each across its rotated files, as one text (blocking).
pub fn read_kept(pod_dir: &Path, container: &str) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for n in list_instances(pod_dir, container)? {
        Concat::open(&instance_files(pod_dir, container, n)?, false)?.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Where a starting container writes: the FIFO of its new instance. The FIFO stays
/// open (read-write) in this value until the container has it: drop it once the
/// runtime has started the process (or failed to).
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    _hold: File,
}

impl Output {
    /// The FIFO to give the container as stdout and stderr (opened read-write).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A pod known to the agent.
#[derive(Clone, Debug)]
pub struct PodLogs {
    /// The pod's uid.
    pub uid: String,
    /// Its log folder.
    pub dir: PathBuf,
    /// Its containers, in spec order.
    pub containers: Vec<String>,
    /// Cancelled when the pod is gone (ends followers).
    pub gone: CancellationToken,
}

/// The pods whose logs can be read, by namespace and name, and how their logs rotate.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<RwLock<HashMap<(String, String), PodLogs>>>,
    rotation: Rotation,
}

impl Registry {
    /// An empty registry whose containers' logs rotate by `rotation`.
    pub fn new(rotation: Rotation) -> Self {
        Registry {
            inner: Arc::default(),
            rotation,
        }
    }

    /// Starts a new instance of `container`'s log in `pod_dir` (off the async worker,
    /// see [`crate::blocking`]): keeps the previous instance's files, removes
    /// older ones, creates the FIFO and starts the thread that drains it.
    pub fn open_output(&self, pod_dir: &Path, container: &str) -> std::io::Result<Output> {
        crate::blocking::file_work(|| self.open_output_now(pod_dir, container))
    }

    fn open_output_now(&self, pod_dir: &Path, container: &str) -> std::io::Result<Output> {
        let existing = list_instances(pod_dir, container)?;
        let n = existing.last().map_or(0, |last| last + 1);
        for old in existing.iter().filter(|&&i| i + 1 < n) {
            remove_instance(pod_dir, container, *old);
        }
        // The previous instance is over; its FIFO goes even if no writer is left to
        // remove it (the agent restarted after the container died): followers move on.
        if let Some(prev) = n.checked_sub(1) {
            let _ = std::fs::remove_file(instance_fifo(pod_dir, container, prev));
        }
        let fifo = instance_fifo(pod_dir, container, n);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?;
        let hold = OpenOptions::new().read(true).write(true).open(&fifo)?;
        if let Err(e) = nix::fcntl::fcntl(&hold, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
            tracing::debug!(error = %e, "cannot enlarge the log pipe");
        }
        start_writer(pod_dir, container, n, self.rotation)?;
        Ok(Output {
            path: fifo,
            _hold: hold,
        })
    }

    /// Drains the log FIFO of an adopted container again (its output waited in the
    /// pipe while no agent ran). Returns whether there was one to drain.
    pub fn resume_output(&self, pod_dir: &Path, container: &str) -> std::io::Result<bool> {
        crate::blocking::file_work(|| self.resume_output_now(pod_dir, container))
    }

    fn resume_output_now(&self, pod_dir: &Path, container: &str) -> std::io::Result<bool> {
        let Some(n) = list_instances(pod_dir, container)?
            .into_iter()
            .rev()
            .find(|n| instance_fifo(pod_dir, container, *n).exists())
        else {
            return Ok(false);
        };
        start_writer(pod_dir, container, n, self.rotation)?;
        Ok(true)
    }

    /// Registers a pod (a newer pod of the same name replaces the older).
    pub fn insert(&self, namespace: &str, name: &str, entry: PodLogs) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let uid = entry.uid.clone();
        if let Some(old) = map.insert((namespace.to_string(), name.to_string()), entry) {
            // The older pod's followers end: its name now means the newer pod.
            if old.uid != uid {
                old.gone.cancel();
            }
        }
    }

    /// The pod is gone: followers stop.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if map.get(&key).is_some_and(|e| e.uid == uid) {
            if let Some(e) = map.remove(&key) {
                e.gone.cancel();
            }
        }
    }

    /// Looks a pod up.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodLogs> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_string(), name.to_string())).cloned()
    }
}

/// Several files read as one, their lengths fixed when opened, except that the last
/// one may be read past its length when `open_ended` (a followed live file).
struct Concat {
    parts: Vec<(File, u64)>,
    last_path: Option<PathBuf>,
    pos: u64,
    open_ended: bool,
}

impl Concat {
    /// Opens `paths` (missing ones, rotated away meanwhile, are skipped).
    fn open(paths: &[PathBuf], open_ended: bool) -> std::io::Result<Concat> {
        let mut parts = Vec::new();
        let mut last_path = None;
        for p in paths {
            match File::open(p) {
                Ok(f) => {
                    let len = f.metadata()?.len();
                    parts.push((f, len));
                    last_path = Some(p.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Concat {
            parts,
            last_path,
            pos: 0,
            open_ended,
        })
    }

    fn total(&self) -> u64 {
        self.parts.iter().map(|(_, l)| l).sum()
    }

    /// Whether the live file was rotated away from under the last part.
    fn last_rotated(&self) -> bool {
        let (Some((f, _)), Some(p)) = (self.parts.last(), &self.last_path) else {
            return false;
        };
        match (f.metadata(), std::fs::metadata(p)) {
            (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
            (Ok(_), Err(_)) => true,
            _ => false,
        }
    }
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let count = self.parts.len();
        let mut start = 0u64;
        for (i, (f, len)) in self.parts.iter_mut().enumerate() {
            let last = i + 1 == count;
            if self.pos < start + *len || (last && self.open_ended) {
                let off = self.pos - start;
                f.seek(SeekFrom::Start(off))?;
                let want = if last && self.open_ended {
                    buf.len()
                } else {
                    usize::try_from(*len - off)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                };
                let n = f.read(&mut buf[..want])?;
                self.pos += n as u64;
                if last && self.pos > start + *len {
                    *len = self.pos - start;
                }
                return Ok(n);
            }
            start += *len;
        }
        Ok(0)
    }
}

impl Seek for Concat {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let total = self.total();
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// The offset in `file` where its last `n` lines begin (a final line without a
/// newline counts as a line).
pub fn tail_offset<F: Read + Seek>(file: &mut F, n: u64) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if n == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; 8192];
    // A trailing newline ends the last line; it does not start another.
    let mut skip_last = true;
    while pos > 0 {
        let step = (pos as usize).min(buf.len());
        pos -= step as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..step])?;
        for i in (0..step).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
        skip_last = false;
    }
    Ok(0)
}

/// The `NodeAgent` service.
#[derive(Clone)]
pub struct LogService {
    registry: Registry,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl LogService {
    /// Serves logs of the pods in `registry`; streaming tasks live on `tracker` and
    /// stop at `shutdown`.
    pub fn new(registry: Registry, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        LogService {
            registry,
            tracker,
            shutdown,
        }
    }
}

fn pick_container(req: &LogsRequest, pod: &PodLogs) -> Result<String, Status> {
    if !req.container.is_empty() {
        if pod.containers.contains(&req.container) {
            return Ok(req.container.clone());
        }
        return Err(Status::not_found(format!(
            "container {} is not valid for pod {}",
            req.container, req.pod
        )));
    }
    match pod.containers.as_slice() {
        [only] => Ok(only.clone()),
        many => Err(Status::invalid_argument(format!(
            "a container name must be specified for pod {}, choose one of: [{}]",
            req.pod,
            many.join(" ")
        ))),
    }
}

/// What one stream reads.
struct StreamSpec {
    dir: PathBuf,
    container: String,
    /// The instance to start with (None: none yet; with follow, wait for the first).
    instance: Option<u32>,
    /// Follow growth, rotation and later instances.
    follow: bool,
    tail: Option<i64>,
}

/// Where one stream ends up, for its sender.
struct Sink {
    tx: mpsc::Sender<Result<LogChunk, Status>>,
    gone: CancellationToken,
    shutdown: CancellationToken,
}

impl Sink {
    fn send(&self, data: &[u8]) -> bool {
        self.tx
            .blocking_send(Ok(LogChunk {
                data: data.to_vec(),
            }))
            .is_ok()
    }

    fn fail(&self, what: &Path, e: std::io::Error) {
        let _ = self
            .tx
            .blocking_send(Err(Status::internal(format!("{}: {e}", what.display()))));
    }

    fn stopped(&self) -> bool {
        self.shutdown.is_cancelled() || self.tx.is_closed()
    }

    /// Sends everything `src` has now; false when the client went away or it failed.
    fn copy(&self, src: &mut Concat, buf: &mut [u8], dir: &Path) -> bool {
        loop {
            match src.read(buf) {
                Ok(0) => return true,
                Ok(n) => {
                    if !self.send(&buf[..n]) {
                        return false;
                    }
                }
                Err(e) => {
                    self.fail(dir, e);
                    return false;
                }
            }
        }
    }
}

/// Streams a container's log (blocking: runs on a blocking thread).
fn stream_blocking(spec: StreamSpec, sink: Sink) {
    let (dir, container) = (&spec.dir, spec.container.as_str());
    let mut instance = match spec.instance {
        Some(n) => n,
        None if !spec.follow => return,
        // The container has not started yet: wait for its first instance.
        None => loop {
            if sink.stopped() || sink.gone.is_cancelled() {
                return;
            }
            std::thread::sleep(FOLLOW_POLL);
            if let Some(n) = list_instances(dir, container)
                .ok()
                .and_then(|v| v.last().copied())
            {
                break n;
            }
        },
    };
    let open =
        |n: u32| instance_files(dir, container, n).and_then(|f| Concat::open(&f, spec.follow));
    let mut src = match open(instance) {
        Ok(c) => c,
        Err(e) => return sink.fail(dir, e),
    };
    let start = match spec.tail {
        Some(n) if n >= 0 => tail_offset(&mut src, n as u64),
        _ => Ok(0),
    };
    if let Err(e) = start.and_then(|s| src.seek(SeekFrom::Start(s))) {
        return sink.fail(dir, e);
    }
    let mut buf = vec![0u8; CHUNK];
    if !sink.copy(&mut src, &mut buf, dir) || !spec.follow {
        return;
    }
    let mut last_round = false;
    loop {
        if sink.stopped() {
            return;
        }
        if last_round {
            return;
        }
        if sink.gone.is_cancelled() {
            // The pod is gone: what its writers left is read once more, then the end.
            last_round = true;
        } else {
            std::thread::sleep(FOLLOW_POLL);
        }
        if !sink.copy(&mut src, &mut buf, dir) {
            return;
        }
        if src.last_rotated() {
            // Rotated: the rest of the old file is read above; continue in the new one.
            if !sink.copy(&mut src, &mut buf, dir) {
                return;
            }
            match Concat::open(&[instance_log(dir, container, instance)], true) {
                Ok(c) => src = c,
                Err(e) => return sink.fail(dir, e),
            }
            continue;
        }
        // This instance is over (its FIFO drained and gone) and a newer one began.
        if !instance_fifo(dir, container, instance).exists() {
            let newer = list_instances(dir, container)
                .ok()
                .and_then(|v| v.into_iter().find(|n| *n > instance));
            if let Some(n) = newer {
                if !sink.copy(&mut src, &mut buf, dir) {
                    return;
                }
                instance = n;
                match open(n) {
                    Ok(c) => src = c,
                    Err(e) => return sink.fail(dir, e),
                }
                last_round = false;
            }
        }
    }
}

/// The instance a request reads: the latest, or with `previous` the one before it.
fn choose_instance(
    instances: &[u32],
    previous: bool,
    container: &str,
    pod: &str,
) -> Result<Option<u32>, Status> {
    if !previous {
        return Ok(instances.last().copied());
    }
    match instances {
        [.., prev, _] => Ok(Some(*prev)),
        _ => Err(Status::invalid_argument(format!(
            "previous terminated container \"{container}\" in pod \"{pod}\" not found"
        ))),
    }
}

#[tonic::async_trait]
impl NodeAgent for LogService {
    type LogsStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send + 'static>>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        crate::endpoint::admit(&request, "twinset.v1.NodeAgent/Logs")?;
        let req = request.into_inner();
        let namespace = if req.namespace.is_empty() {
            "default".to_string()
        } else {
            req.namespace.clone()
        };
        let pod = self.registry.get(&namespace, &req.pod).ok_or_else(|| {
            Status::not_found(format!("pods \"{}\" not found on this node", req.pod))
        })?;
        let container = pick_container(&req, &pod)?;
        let (dir, c) = (pod.dir.clone(), container.clone());
        let instances = tokio::task::spawn_blocking(move || list_instances(&dir, &c))
            .await
            .map_err(|e| Status::internal(format!("listing logs: {e}")))?
            .map_err(|e| Status::internal(format!("{}: {e}", pod.dir.display())))?;
        let instance = choose_instance(&instances, req.previous, &container, &req.pod)?;
        let (tx, rx) = mpsc::channel(16);
        let spec = StreamSpec {
            dir: pod.dir.clone(),
            container,
            instance,
            // The previous instance is over: there is nothing to follow.
            follow: req.follow && !req.previous,
            tail: req.tail_lines,
        };
        let sink = Sink {
            tx,
            gone: pod.gone,
            shutdown: self.shutdown.clone(),
        };
        self.tracker
            .spawn_blocking(move || stream_blocking(spec, sink));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tail(text: &str, n: u64) -> String {
        let mut c = Cursor::new(text.as_bytes().to_vec());
        let off = tail_offset(&mut c, n).unwrap() as usize;
        text[off..].to_string()
    }

    #[test]
    fn tail_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long, 2), "line 4998\nline 4999\n");
    }

    #[test]
    fn registry_replaces_and_removes_by_uid() {
        let r = Registry::default();
        let entry = |uid: &str| PodLogs {
            uid: uid.into(),
            dir: PathBuf::from("/x"),
            containers: vec!["c".into()],
            gone: CancellationToken::new(),
        };
        let old = entry("old");
        r.insert("ns", "p", old.clone());
        r.insert("ns", "p", entry("new"));
        assert!(old.gone.is_cancelled());
        r.remove("ns", "p", "old");
        assert_eq!(r.get("ns", "p").unwrap().uid, "new");
        let gone = r.get("ns", "p").unwrap().gone;
        r.remove("ns", "p", "new");
        assert!(r.get("ns", "p").is_none());
        assert!(gone.is_cancelled());
    }

    #[test]
    fn rotation_settings_are_checked() {
        assert_eq!(Rotation::new(0, 5), Err(RotationError::ZeroSize));
        assert_eq!(Rotation::new(10, 1), Err(RotationError::TooFewFiles(1)));
        let r = Rotation::new(10, 2).unwrap();
        assert_eq!((r.max_size(), r.max_files()), (10, 2));
        assert_eq!(Rotation::default().max_size(), 10 * 1024 * 1024);
    }

    fn disk_use(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Reads instance `n` whole, as a non-following stream would.
    fn read_instance(dir: &Path, n: u32, tail: Option<u64>) -> String {
        let mut c = Concat::open(&instance_files(dir, "c", n).unwrap(), false).unwrap();
        let start = tail.map_or(0, |t| tail_offset(&mut c, t).unwrap());
        c.seek(SeekFrom::Start(start)).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn rotating_file_keeps_at_most_size_times_files() {
        let t = tempfile::tempdir().unwrap();
        let rotation = Rotation::new(1000, 3).unwrap();
        let mut f = RotatingFile::open(instance_log(t.path(), "c", 0), rotation).unwrap();
        let all: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        for chunk in all.as_bytes().chunks(333) {
            f.write(chunk).unwrap();
        }
        assert!(disk_use(t.path()) <= 3000, "{} bytes", disk_use(t.path()));
        assert_eq!(
            instance_files(t.path(), "c", 0).unwrap(),
            [
                t.path().join("c_0.log.2"),
                t.path().join("c_0.log.1"),
                t.path().join("c_0.log")
            ]
        );
        // Read across the rotated files: the newest bytes, in order.
        let text = read_instance(t.path(), 0, None);
        assert!(all.ends_with(&text));
        assert!(text.len() > 2000);
        assert_eq!(
            read_instance(t.path(), 0, Some(2)),
            "line 1998\nline 1999\n"
        );
    }

    #[test]
    fn instances_and_previous() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "c_0.log",
            "c_1.log",
            "c_1.log.1",
            "c_2.fifo",
            "cc_7.log",
            "c_x.log",
        ] {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        assert_eq!(list_instances(t.path(), "c").unwrap(), [0, 1, 2]);
        assert_eq!(
            choose_instance(&[0, 1, 2], false, "c", "p").unwrap(),
            Some(2)
        );
        assert_eq!(
            choose_instance(&[0, 1, 2], true, "c", "p").unwrap(),
            Some(1)
        );
        assert_eq!(choose_instance(&[], false, "c", "p").unwrap(), None);
        let e = choose_instance(&[3], true, "c", "p").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            e.message(),
            "previous terminated container \"c\" in pod \"p\" not found"
        );
    }

    #[test]
    fn output_goes_through_the_fifo_and_old_instances_go() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::new(Rotation::new(1 << 20, 2).unwrap());
        for round in 0..3u32 {
            let out = reg.open_output(t.path(), "c").unwrap();
            assert_eq!(out.path(), instance_fifo(t.path(), "c", round));
            {
                // What a container does: open the FIFO and write, then exit.
                let mut w = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(out.path())
                    .unwrap();
                writeln!(w, "run {round}").unwrap();
            }
            drop(out);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while instance_fifo(t.path(), "c", round).exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "writer did not finish"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                read_instance(t.path(), round, None),
                format!("run {round}\n")
            );
        }
        // Only the current and the previous instance are kept.
        assert_eq!(list_instances(t.path(), "c").unwrap(), [1, 2]);
        // A FIFO left by an instance whose writer is gone goes with the next start.
        std::fs::write(instance_fifo(t.path(), "c", 2), "").unwrap();
        let out = reg.open_output(t.path(), "c").unwrap();
        assert!(!instance_fifo(t.path(), "c", 2).exists());
        drop(out);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while instance_fifo(t.path(), "c", 3).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "writer did not finish"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!reg.resume_output(t.path(), "c").unwrap());
    }

    #[test]
    fn adopted_output_is_drained_again() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::default();
        let out = reg.open_output(t.path(), "c").unwrap();
        // The container holds the FIFO; a writer of an earlier agent drained it.
        let mut container = OpenOptions::new()
            .read(true)
            .write(true)
            .open(out.path())
            .unwrap();
        drop(out);
        // A second writer thread (as a restarted agent starts) shares the draining.
        assert!(reg.resume_output(t.path(), "c").unwrap());
        writeln!(container, "after restart").unwrap();
        drop(container);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read_instance(t.path(), 0, None) != "after restart\n" {
            assert!(std::time::Instant::now() < deadline, "not drained");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Receives chunks into `got` until it ends with `want`.
    async fn expect(
        rx: &mut mpsc::Receiver<Result<LogChunk, Status>>,
        got: &mut String,
        want: &str,
    ) {
        while !got.ends_with(want) {
            let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("no log chunk in time")
                .expect("stream ended")
                .unwrap();
            got.push_str(std::str::from_utf8(&c.data).unwrap());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_streams_growth_rotation_and_the_next_instance() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let rotation = Rotation::new(8, 3).unwrap();
        let mut live = RotatingFile::open(instance_log(&dir, "c", 0), rotation).unwrap();
        live.write(b"one\ntwo\n").unwrap();
        // Instance 0 is still running: its FIFO exists.
        std::fs::write(instance_fifo(&dir, "c", 0), "").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let gone = CancellationToken::new();
        let sink = Sink {
            tx,
            gone: gone.clone(),
            shutdown: CancellationToken::new(),
        };
        let spec = StreamSpec {
            dir: dir.clone(),
            container: "c".into(),
            instance: Some(0),
            follow: true,
            tail: Some(1),
        };
        let task = tokio::task::spawn_blocking(move || stream_blocking(spec, sink));
        let mut got = String::new();
        expect(&mut rx, &mut got, "two\n").await;
        // Growth, then a rotation (8-byte files).
        live.write(b"three\n").unwrap();
        expect(&mut rx, &mut got, "three\n").await;
        live.write(b"four\nfive\n").unwrap();
        expect(&mut rx, &mut got, "four\nfive\n").await;
        // The instance ends and the container restarts.
        std::fs::remove_file(instance_fifo(&dir, "c", 0)).unwrap();
        let mut next = RotatingFile::open(instance_log(&dir, "c", 1), rotation).unwrap();
        next.write(b"again\n").unwrap();
        expect(&mut rx, &mut got, "again\n").await;
        assert_eq!(got, "two\nthree\nfour\nfive\nagain\n");
        gone.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.recv().await.is_none());
    }
}
