//! The durable engine: sled under `<data_dir>/store`.
//!
//! Reads come from an in-memory copy of every object (the [`State`]), so they are cheap
//! and a list is consistent at one revision. Writes go through one writer task: it takes
//! every request waiting in its queue, writes each (object + revision counter) in one sled
//! transaction, then makes the whole group durable with a single flush before it
//! acknowledges any of them and publishes their changes to watchers (group commit).

use super::state::{Key, Op, Prepared, State};
use super::{Error, Hub, Result, Store, Watcher};
use prost::Message;
use sled::transaction::{TransactionError, TransactionResult};
use sled::Transactional;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// Where the revision counter lives in the meta tree.
const REVISION_KEY: &[u8] = b"revision";
/// The most writes one group commit takes.
const MAX_BATCH: usize = 512;
/// sled's page cache; objects are read from memory, so sled needs little.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Object>>,
}

struct Inner {
    db: sled::Db,
    objects: sled::Tree,
    meta: sled::Tree,
    state: RwLock<State>,
    hub: Hub,
}

/// The sled-backed store. Create it inside a tokio runtime (it spawns its writer task).
pub struct SledStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("rev", &self.current_revision())
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, restoring every object and the revision
    /// counter; `history` is how many changes watches can resume across.
    pub fn open(dir: &Path, history: usize) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let objects = db.open_tree("objects")?;
        let meta = db.open_tree("meta")?;
        let rev =
            match meta.get(REVISION_KEY)? {
                Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                    Error::Backend("the stored revision counter is corrupt".into())
                })?),
                None => 0,
            };
        let mut loaded = Vec::new();
        for item in objects.iter() {
            let (k, v) = item?;
            let obj = Object::decode(v.as_ref()).map_err(|e| {
                Error::Backend(format!(
                    "cannot decode stored object {}: {e}",
                    String::from_utf8_lossy(&k)
                ))
            })?;
            loaded.push(obj);
        }
        let state = State::load(loaded, rev);
        let rev = state.rev();
        tracing::info!(path = %dir.display(), rev, "store opened");
        let inner = Arc::new(Inner {
            db,
            objects,
            meta,
            state: RwLock::new(state),
            hub: Hub::new(history, rev),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(inner.clone(), rx));
        Ok(SledStore {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: tokio::sync::Mutex::new(Some(writer)),
        })
    }

    async fn write(&self, op: Op) -> Result<Object> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(Request { op, reply }).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes one change to sled (object and revision counter in one transaction) and
    /// then to the in-memory state. Not yet durable: the caller flushes.
    fn apply(&self, op: Op) -> Result<Prepared> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let p = state.prepare(op, &twinset_proto::time::now())?;
        let key = encode_key(&p.key);
        let value = p.value.as_ref().map(Message::encode_to_vec);
        let rev = p.event.rev.to_be_bytes();
        let r: TransactionResult<(), ()> = (&self.objects, &self.meta).transaction(|(o, m)| {
            match &value {
                Some(v) => o.insert(key.as_slice(), v.as_slice())?,
                None => o.remove(key.as_slice())?,
            };
            m.insert(REVISION_KEY, &rev[..])?;
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(Error::Backend("transaction aborted".into()))
            }
        }
        state.commit(&p);
        Ok(p)
    }
}

fn encode_key((kind, ns, name): &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.as_str().len() + ns.len() + name.len() + 2);
    k.extend_from_slice(kind.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The group-commit loop: apply every queued write, flush once, then acknowledge and publish.
async fn writer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        for Request { op, reply } in batch {
            match inner.apply(op) {
                Ok(p) => {
                    let obj = p.value.clone().unwrap_or_else(|| p.event.object.clone());
                    events.push(p.event);
                    replies.push((reply, Ok(obj)));
                }
                Err(e) => replies.push((reply, Err(e))),
            }
        }
        if !events.is_empty() {
            let flushed = inner.db.flush_async().await;
            if let Err(e) = &flushed {
                tracing::error!(error = %e, "store flush failed; writes are not acknowledged");
                for (_, res) in replies.iter_mut() {
                    if res.is_ok() {
                        *res = Err(Error::Backend(format!("write not durable: {e}")));
                    }
                }
            }
            inner.hub.publish(events);
        }
        for (reply, res) in replies {
            // The caller may have gone away; the write stands either way.
            let _ = reply.send(res);
        }
    }
}

#[tonic::async_trait]
impl Store for SledStore {
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
        self.write(Op::Delete(
            (kind, namespace.to_string(), name.to_string()),
            expected_rv,
        ))
        .await
    }

    fn current_revision(&self) -> u64 {
        self.inner.read().rev()
    }

    fn watch(&self, from_rev: u64) -> Result<Watcher> {
        let state = self.inner.read();
        self.inner.hub.watch(from_rev, state.rev())
    }

    async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(handle) = self.writer.lock().await.take() {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "store writer task failed");
            }
        }
        if let Err(e) = self.inner.db.flush_async().await {
            tracing::error!(error = %e, "store flush at close failed");
        }
        self.inner.hub.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use twinset_proto::v1::{Namespace, ObjectMeta};

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 4).unwrap();
        testing::conformance(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn reopen_keeps_objects_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let ns = |n: &str| {
            Object::from(Namespace {
                metadata: Some(ObjectMeta {
                    name: n.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let store = SledStore::open(dir.path(), 100).unwrap();
        store.create(ns("a")).await.unwrap();
        store.create(ns("b")).await.unwrap();
        store.delete(Kind::Namespace, "", "b", None).await.unwrap();
        assert_eq!(store.current_revision(), 3);
        store.close().await;
        drop(store);

        let store = SledStore::open(dir.path(), 100).unwrap();
        assert_eq!(
            store.current_revision(),
            3,
            "the delete's revision is kept too"
        );
        assert!(store.get(Kind::Namespace, "", "a").is_some());
        assert!(store.get(Kind::Namespace, "", "b").is_none());
        let c = store.create(ns("c")).await.unwrap();
        assert_eq!(c.resource_version(), 4);
        // History does not survive a restart: only "from now" can be watched.
        assert!(matches!(store.watch(2), Err(Error::TooOld { .. })));
        assert!(store.watch(4).is_ok());
        store.close().await;
    }

    #[tokio::test]
    async fn concurrent_writers_share_flushes_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), 1000).unwrap());
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let obj = Object::from(Namespace {
                    metadata: Some(ObjectMeta {
                        name: format!("ns-{i}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                store.create(obj).await.map(|o| o.resource_version())
            }));
        }
        let mut revs = Vec::new();
        for t in tasks {
            revs.push(t.await.unwrap().unwrap());
        }
        revs.sort_unstable();
        assert_eq!(revs, (1..=64).collect::<Vec<u64>>());
        store.close().await;
    }
}
