//! Container logs: where they live (`<data_dir>/pods/<ns>_<pod>_<uid>/<container>.log`),
//! which pods the agent knows, and the `NodeAgent.Logs` gRPC service that streams a
//! log file (its last lines, then, with follow, what is appended until the pod is
//! gone or the client goes away).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
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

/// How often a followed log file is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 32 * 1024;

/// The folder of a pod's logs.
pub fn pod_dir(data_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// The log file of one container.
pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
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

/// The pods whose logs can be read, by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<RwLock<HashMap<(String, String), PodLogs>>>,
}

impl Registry {
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

async fn stream_file(
    path: PathBuf,
    follow: bool,
    tail: Option<i64>,
    gone: CancellationToken,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Result<LogChunk, Status>>,
) {
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !follow {
                return;
            }
            // The container has not written yet: wait for the file.
            loop {
                tokio::select! {
                    _ = gone.cancelled() => return,
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
            }
        }
        Err(e) => {
            let _ = tx
                .send(Err(Status::internal(format!("{}: {e}", path.display()))))
                .await;
            return;
        }
    };
    let start = match tail {
        Some(n) if n >= 0 => tail_offset(&mut file, n as u64),
        _ => Ok(0),
    };
    if let Err(e) = start.and_then(|s| file.seek(SeekFrom::Start(s))) {
        let _ = tx
            .send(Err(Status::internal(format!("{}: {e}", path.display()))))
            .await;
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut last_round = false;
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                if !follow || last_round {
                    return;
                }
                tokio::select! {
                    _ = gone.cancelled() => last_round = true,
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
            }
            Ok(n) => {
                if tx
                    .send(Ok(LogChunk {
                        data: buf[..n].to_vec(),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!("{}: {e}", path.display()))))
                    .await;
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl NodeAgent for LogService {
    type LogsStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send + 'static>>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
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
        let path = log_path(&pod.dir, &container);
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(stream_file(
            path,
            req.follow,
            req.tail_lines,
            pod.gone,
            shutdown,
            tx,
        ));
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

    #[tokio::test]
    async fn follow_streams_growth_until_the_pod_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.log");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let gone = CancellationToken::new();
        let task = tokio::spawn(stream_file(
            path.clone(),
            true,
            Some(1),
            gone.clone(),
            CancellationToken::new(),
            tx,
        ));
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.data, b"two\n");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(b"three\n").unwrap();
        }
        let next = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.data, b"three\n");
        gone.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.recv().await.is_none());
    }
}
