//! The durable store: group commit over a storage [`Backend`], with the order that makes
//! "acknowledged" mean "durable" and nothing else visible.
//!
//! Writes queue in a bounded channel (a writer waits for room: back-pressure, not memory).
//! One writer task takes every request waiting (up to [`MAX_BATCH`]) and, for the group:
//! 1. computes each write on top of the current state without changing it ([`State::batch`]);
//! 2. hands the group to the backend in one atomic write, then flushes it;
//! 3. only when the flush succeeded: applies the group to the in-memory state (what reads
//!    see) and publishes its changes to watchers, both under the state's write lock;
//! 4. then acknowledges each writer.
//!
//! When the write or the flush fails, every write of the group fails, the backend is told
//! to put back what the group overwrote, and the in-memory state and watchers never see
//! any of it. If even that restore fails the store refuses every later write (its disk
//! and its memory may disagree), saying why.

use super::state::{Op, Prepared, State};
use super::{Error, Hub, Keep, Key, Result, Store, Watcher};
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// The most writes one group commit takes.
pub const MAX_BATCH: usize = 512;

/// Where a durable store keeps its objects. Implementations are synchronous except for
/// the flush; the store calls them from its single writer task, never concurrently.
pub trait Backend: Send + Sync + 'static {
    /// Writes a group of changes (objects, and the revision counter as of the last one)
    /// atomically: all or none. Not yet durable.
    fn write(&self, group: &[Prepared]) -> Result<()>;

    /// Puts back what a group overwrote after its flush failed: each key's value before
    /// the group (None: absent) and the revision counter `rev`.
    fn restore(&self, before: &[(Key, Option<Object>)], rev: u64) -> Result<()>;

    /// Makes everything written so far durable.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
}

/// How a durable store is sized.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How many recent changes watches can resume across.
    pub history: usize,
    /// How many bytes (encoded objects) the watch history may hold.
    pub history_bytes: usize,
    /// How many writes may wait for the writer before writers have to wait for room.
    pub queue: usize,
}

impl Options {
    /// `history` changes of watch history; the default byte bound and queue.
    pub fn with_history(history: usize) -> Options {
        Options {
            history,
            ..Options::default()
        }
    }
}

impl Default for Options {
    /// 10 000 changes or 64 MiB of watch history; 1024 queued writes.
    fn default() -> Options {
        Options {
            history: 10_000,
            history_bytes: super::hub::DEFAULT_HISTORY_BYTES,
            queue: 1024,
        }
    }
}

/// How full the write queue has been.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// The most writes the queue holds.
    pub capacity: usize,
    /// The most writes it has held at once since the store opened.
    pub high_water: usize,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Object>>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    state: RwLock<State>,
    hub: Hub,
    /// Set when a failed group could not be undone in the backend: the reason.
    broken: OnceLock<String>,
}

/// A store whose writes are acknowledged once durable in its [`Backend`]. Create it inside
/// a tokio runtime (it spawns its writer task).
pub struct DurableStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    capacity: usize,
    high_water: AtomicUsize,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("rev", &self.current_revision())
            .finish()
    }
}

impl DurableStore {
    /// A store over `backend`, which holds `state` (its contents as loaded at open).
    pub fn new(backend: Arc<dyn Backend>, state: State, options: Options) -> DurableStore {
        let rev = state.rev();
        let inner = Arc::new(Inner {
            backend,
            state: RwLock::new(state),
            hub: Hub::new(options.history, options.history_bytes, rev),
            broken: OnceLock::new(),
        });
        let capacity = options.queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let writer = tokio::spawn(writer(inner.clone(), rx));
        DurableStore {
            inner,
            tx: Mutex::new(Some(tx)),
            capacity,
            high_water: AtomicUsize::new(0),
            writer: tokio::sync::Mutex::new(Some(writer)),
        }
    }

    /// The write queue's capacity and the most it has held.
    pub fn queue_stats(&self) -> QueueStats {
        QueueStats {
            capacity: self.capacity,
            high_water: self.high_water.load(Ordering::Relaxed),
        }
    }

    /// How many changes and bytes the watch history holds now.
    pub fn history_held(&self) -> (usize, usize) {
        self.inner.hub.held()
    }

    async fn write(&self, op: Op) -> Result<Object> {
        let kind = match &op {
            Op::Create(_) => "create",
            Op::Update(..) => "update",
            Op::Delete(..) => "delete",
        };
        let started = std::time::Instant::now();
        let written = self.write_durably(op).await;
        crate::metrics::store_write(kind, started.elapsed());
        written
    }

    /// [`DurableStore::write`] without its timing.
    async fn write_durably(&self, op: Op) -> Result<Object> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        // Waits for room when the queue is full.
        tx.send(Request { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        let depth = tx.max_capacity() - tx.capacity();
        self.high_water.fetch_max(depth, Ordering::Relaxed);
        drop(tx);
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes and flushes a group; on failure puts back what it overwrote (or marks the
    /// store broken when even that fails).
    async fn make_durable(
        &self,
        group: &[Prepared],
        before: &[(Key, Option<Object>)],
        base_rev: u64,
    ) -> Result<()> {
        let durable = match self.backend.write(group) {
            Ok(()) => self.backend.flush().await,
            Err(e) => Err(e),
        };
        let Err(e) = durable else { return Ok(()) };
        tracing::error!(error = %e, writes = group.len(), "store write or flush failed; none of the group is acknowledged or visible");
        if let Err(undo) = self.backend.restore(before, base_rev) {
            let why = format!(
                "the store cannot accept writes: a failed flush ({e}) could not be undone ({undo}); restart the control plane"
            );
            tracing::error!("{why}");
            let _ = self.broken.set(why);
        }
        Err(e)
    }

    /// One group commit, in the order the module documents.
    async fn commit_group(&self, requests: Vec<Request>) {
        if let Some(why) = self.broken.get() {
            for r in requests {
                let _ = r.reply.send(Err(Error::Backend(why.clone())));
            }
            return;
        }
        let now = twinset_proto::time::now();
        let mut prepared: Vec<Prepared> = Vec::with_capacity(requests.len());
        // Per request: the index of its prepared write, or why it was refused.
        let mut replies = Vec::with_capacity(requests.len());
        let mut before: Vec<(Key, Option<Object>)> = Vec::new();
        let base_rev;
        {
            let state = self.read();
            base_rev = state.rev();
            let mut touched = HashSet::new();
            let mut batch = state.batch();
            for Request { op, reply } in requests {
                match batch.prepare(op, &now) {
                    Ok(p) => {
                        if touched.insert(p.key.clone()) {
                            before.push((p.key.clone(), state.get_key(&p.key).cloned()));
                        }
                        replies.push((reply, Ok(prepared.len())));
                        prepared.push(p);
                    }
                    Err(e) => replies.push((reply, Err(e))),
                }
            }
        }
        if !prepared.is_empty() {
            if let Err(e) = self.make_durable(&prepared, &before, base_rev).await {
                let failed = format!("write not durable: {e}");
                for (reply, res) in replies {
                    let _ = reply.send(match res {
                        Ok(_) => Err(Error::Backend(failed.clone())),
                        Err(refused) => Err(refused),
                    });
                }
                return;
            }
        }
        let results: Vec<Object> = prepared.iter().map(Prepared::result).collect();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for p in &prepared {
                state.commit(p);
            }
            // Under the state lock: a watch started meanwhile sees each change exactly once.
            self.hub.publish(prepared.into_iter().map(|p| p.event));
        }
        for (reply, res) in replies {
            // The caller may have gone away; the write stands either way.
            let _ = reply.send(res.map(|i| results[i].clone()));
        }
    }
}

/// The group-commit loop: one group at a time, until every sender is gone.
async fn writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut group = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut group, MAX_BATCH).await > 0 {
        inner.commit_group(std::mem::take(&mut group)).await;
    }
}

#[tonic::async_trait]
impl Store for DurableStore {
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
        self.inner.read().get(kind, namespace, name).cloned()
    }

    fn list(&self, kind: Kind, namespace: Option<&str>) -> (Vec<Object>, u64) {
        let state = self.inner.read();
        (state.list(kind, namespace), state.rev())
    }

    fn list_where(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        keep: &dyn Fn(&Object) -> bool,
    ) -> Vec<Object> {
        self.inner.read().list_where(kind, namespace, keep)
    }

    async fn create(&self, object: Object) -> Result<Object> {
        self.write(Op::Create(object)).await
    }

    async fn update(&self, object: Object, expected_rv: Option<u64>) -> Result<Object> {
        self.write(Op::Update(object, expected_rv)).await
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        expected_rv: Option<u64>,
    ) -> Result<Object> {
        self.write(Op::Delete(Key::new(kind, namespace, name), expected_rv))
            .await
    }

    fn current_revision(&self) -> u64 {
        self.inner.read().rev()
    }

    fn watch_where(&self, from_rev: u64, keep: Option<Keep>) -> Result<Watcher> {
        let state = self.inner.read();
        self.inner.hub.watch(from_rev, state.rev(), keep)
    }

    async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(handle) = self.writer.lock().await.take() {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "store writer task failed");
            }
        }
        if let Err(e) = self.inner.backend.flush().await {
            tracing::error!(error = %e, "store flush at close failed");
        }
        self.inner.hub.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledBackend;
    use crate::store::{EventType, WatchEvent};
    use futures::FutureExt;
    use std::time::Duration;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    use crate::store::testing::labelled_ns as ns;

    /// The sled backend with every flush held until the test says how it ends.
    struct Gated {
        sled: SledBackend,
        entered: UnboundedSender<()>,
        verdicts: tokio::sync::Mutex<UnboundedReceiver<bool>>,
    }

    impl Backend for Gated {
        fn write(&self, group: &[Prepared]) -> Result<()> {
            self.sled.write(group)
        }
        fn restore(&self, before: &[(Key, Option<Object>)], rev: u64) -> Result<()> {
            self.sled.restore(before, rev)
        }
        fn flush(&self) -> BoxFuture<'_, Result<()>> {
            async move {
                let _ = self.entered.send(());
                let ok = self.verdicts.lock().await.recv().await.unwrap_or(true);
                if !ok {
                    return Err(Error::Backend("injected flush failure".into()));
                }
                self.sled.flush().await
            }
            .boxed()
        }
    }

    struct Harness {
        store: Arc<DurableStore>,
        entered: UnboundedReceiver<()>,
        verdict: UnboundedSender<bool>,
    }

    impl Harness {
        fn open(dir: &std::path::Path) -> Harness {
            let (sled, state) = SledBackend::open(dir).unwrap();
            let (entered_tx, entered) = mpsc::unbounded_channel();
            let (verdict, verdicts) = mpsc::unbounded_channel();
            let backend = Gated {
                sled,
                entered: entered_tx,
                verdicts: tokio::sync::Mutex::new(verdicts),
            };
            Harness {
                store: Arc::new(DurableStore::new(
                    Arc::new(backend),
                    state,
                    Options::with_history(100),
                )),
                entered,
                verdict,
            }
        }

        /// Waits until the writer is inside a flush.
        async fn flushing(&mut self) {
            tokio::time::timeout(Duration::from_secs(10), self.entered.recv())
                .await
                .expect("a flush starts")
                .unwrap();
        }
    }

    /// Waits until `n` writes wait in the queue (the writer is held in a flush).
    async fn queued(store: &DurableStore, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.queue_stats().high_water < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} writes queue up"
            );
            tokio::task::yield_now().await;
        }
    }

    fn nothing_waiting(w: &mut Watcher) -> Option<WatchEvent> {
        w.recv().now_or_never().flatten()
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_group_and_nobody_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::open(dir.path());
        let store = h.store.clone();

        // A first object, made durable normally.
        let create = tokio::spawn({
            let s = store.clone();
            async move { s.create(ns("kept", "v1")).await }
        });
        h.flushing().await;
        assert!(
            store.get(Kind::Namespace, "", "kept").is_none(),
            "nothing is visible before its flush"
        );
        assert_eq!(store.current_revision(), 0);
        h.verdict.send(true).unwrap();
        let kept = create.await.unwrap().unwrap();
        assert_eq!(kept.resource_version(), 1);
        assert!(store.get(Kind::Namespace, "", "kept").is_some());

        let mut watcher = store.watch(1).unwrap();
        let (mut listed, _) = store.list(Kind::Namespace, None);
        assert_eq!(listed.len(), 1);

        // A group whose flush fails: a create, an update and a delete. The first write
        // goes alone; the others queue behind its flush and form the next group.
        let writes = tokio::spawn({
            let s = store.clone();
            async move {
                let first = s.create(ns("lost-0", "x")).await;
                (first, ())
            }
        });
        h.flushing().await;
        let mut rest = Vec::new();
        for i in 1..8 {
            let s = store.clone();
            rest.push(tokio::spawn(async move {
                s.create(ns(&format!("lost-{i}"), "x")).await
            }));
        }
        queued(&store, 7).await;
        let upd = tokio::spawn({
            let s = store.clone();
            async move { s.update(ns("kept", "v2"), Some(1)).await }
        });
        queued(&store, 8).await;
        let del = tokio::spawn({
            let s = store.clone();
            async move { s.delete(Kind::Namespace, "", "kept", None).await }
        });
        queued(&store, 9).await;
        // While the first flush is held: nothing of it can be read or watched.
        assert_eq!(store.current_revision(), 1);
        assert!(store.get(Kind::Namespace, "", "lost-0").is_none());
        assert!(nothing_waiting(&mut watcher).is_none());
        h.verdict.send(false).unwrap();
        let (first, ()) = writes.await.unwrap();
        let err = first.unwrap_err();
        assert!(err.to_string().contains("not durable"), "{err}");
        // The second group (the queued writes) fails too.
        h.flushing().await;
        assert_eq!(store.current_revision(), 1);
        h.verdict.send(false).unwrap();
        for t in rest {
            assert!(matches!(t.await.unwrap(), Err(Error::Backend(_))));
        }
        assert!(matches!(upd.await.unwrap(), Err(Error::Backend(_))));
        assert!(matches!(del.await.unwrap(), Err(Error::Backend(_))));

        // No reader and no watcher saw any of it.
        assert_eq!(store.current_revision(), 1);
        let now = store.get(Kind::Namespace, "", "kept").unwrap();
        assert_eq!(now, kept, "the failed update and delete left it as it was");
        listed = store.list(Kind::Namespace, None).0;
        assert_eq!(listed, vec![kept.clone()]);
        assert!(nothing_waiting(&mut watcher).is_none());

        // The next write takes the next revision and is the next thing watched.
        let after = tokio::spawn({
            let s = store.clone();
            async move { s.create(ns("after", "y")).await }
        });
        h.flushing().await;
        h.verdict.send(true).unwrap();
        let after = after.await.unwrap().unwrap();
        assert_eq!(after.resource_version(), 2);
        let ev = tokio::time::timeout(Duration::from_secs(5), watcher.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ev.r#type, ev.object.name(), ev.rev),
            (EventType::Added, "after", 2)
        );

        // On disk too: the failed group was put back before anything else was flushed.
        let closing = tokio::spawn({
            let s = store.clone();
            async move { s.close().await }
        });
        h.flushing().await;
        h.verdict.send(true).unwrap();
        closing.await.unwrap();
        drop((store, h));
        let (_, state) = crate::store::testing::reopen(|| SledBackend::open(dir.path())).await;
        assert_eq!(state.rev(), 2);
        let names: Vec<String> = state
            .list(Kind::Namespace, None)
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        assert_eq!(names, ["after", "kept"]);
        assert_eq!(state.get(Kind::Namespace, "", "kept"), Some(&kept));
    }

    /// A backend whose flush fails and whose undo fails too.
    struct Unrecoverable;

    impl Backend for Unrecoverable {
        fn write(&self, _: &[Prepared]) -> Result<()> {
            Ok(())
        }
        fn restore(&self, _: &[(Key, Option<Object>)], _: u64) -> Result<()> {
            Err(Error::Backend("disk gone".into()))
        }
        fn flush(&self) -> BoxFuture<'_, Result<()>> {
            async { Err(Error::Backend("disk gone".into())) }.boxed()
        }
    }

    #[tokio::test]
    async fn a_failure_that_cannot_be_undone_refuses_every_later_write() {
        let store = DurableStore::new(
            Arc::new(Unrecoverable),
            State::default(),
            Options::default(),
        );
        let err = store.create(ns("a", "x")).await.unwrap_err();
        assert!(err.to_string().contains("not durable"), "{err}");
        let err = store.create(ns("b", "x")).await.unwrap_err();
        assert!(
            err.to_string().contains("cannot accept writes"),
            "the store says why it refuses: {err}"
        );
        assert_eq!(store.current_revision(), 0);
        assert!(store.list(Kind::Namespace, None).0.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_writers_waits_for_room_in_a_bounded_queue() {
        const WRITES: usize = 10_000;
        const TASKS: usize = 64;
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            queue: 16,
            ..Options::default()
        };
        let store = Arc::new(DurableStore::open_with(dir.path(), options).unwrap());
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..WRITES).step_by(TASKS) {
                    store.create(ns(&format!("ns-{i}"), "x")).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            store.current_revision(),
            WRITES as u64,
            "every write landed"
        );
        let stats = store.queue_stats();
        assert_eq!(stats.capacity, 16);
        assert!(
            stats.high_water <= stats.capacity,
            "the queue never held more than its capacity: {stats:?}"
        );
        assert!(stats.high_water > 1, "writers did queue up: {stats:?}");
        store.close().await;
    }
}
