//! The sled engine: a [`Backend`] under `<data_dir>/store`, and [`SledStore`], the
//! [`DurableStore`] over it that the control plane runs on.
//!
//! Reads come from the durable store's in-memory copy of every object, so they are cheap
//! and a list is consistent at one revision. Each group commit is one sled transaction
//! (objects plus the revision counter) and one flush; see [`super::durable`] for the order.

use super::durable::{Backend, DurableStore, Options};
use super::state::{Prepared, State};
use super::{Error, Key, Result};
use futures::future::{BoxFuture, FutureExt};
use prost::Message;
use sled::transaction::{TransactionError, TransactionResult};
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;
use twinset_proto::v1::Object;

/// Where the revision counter lives in the meta tree.
const REVISION_KEY: &[u8] = b"revision";
/// sled's page cache; objects are read from memory, so sled needs little.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The control plane's store: durable in sled.
pub type SledStore = DurableStore;

impl DurableStore {
    /// Opens (or creates) the sled store in `dir`, restoring every object and the revision
    /// counter; `history` is how many changes watches can resume across.
    pub fn open(dir: &Path, history: usize) -> Result<SledStore> {
        Self::open_with(dir, Options::with_history(history))
    }

    /// [`DurableStore::open`] with every size given.
    pub fn open_with(dir: &Path, options: Options) -> Result<SledStore> {
        let (backend, state) = SledBackend::open(dir)?;
        Ok(DurableStore::new(Arc::new(backend), state, options))
    }
}

/// sled: an objects tree keyed by kind/namespace/name and a meta tree with the revision.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    objects: sled::Tree,
    meta: sled::Tree,
}

impl SledBackend {
    /// Opens (or creates) the database in `dir` and loads what it holds.
    pub fn open(dir: &Path) -> Result<(SledBackend, State)> {
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
        tracing::info!(path = %dir.display(), rev = state.rev(), "store opened");
        Ok((SledBackend { db, objects, meta }, state))
    }

    /// Puts `(key, value)` pairs (None: remove) and the revision in one transaction.
    fn put(&self, changes: &[(Vec<u8>, Option<Vec<u8>>)], rev: u64) -> Result<()> {
        let rev = rev.to_be_bytes();
        let r: TransactionResult<(), ()> = (&self.objects, &self.meta).transaction(|(o, m)| {
            for (key, value) in changes {
                match value {
                    Some(v) => o.insert(key.as_slice(), v.as_slice())?,
                    None => o.remove(key.as_slice())?,
                };
            }
            m.insert(REVISION_KEY, &rev[..])?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => Err(Error::Backend("transaction aborted".into())),
        }
    }
}

impl Backend for SledBackend {
    fn write(&self, group: &[Prepared]) -> Result<()> {
        let changes: Vec<_> = group
            .iter()
            .map(|p| {
                (
                    encode_key(&p.key),
                    p.value.as_ref().map(Message::encode_to_vec),
                )
            })
            .collect();
        let rev = group.last().map(|p| p.event.rev).unwrap_or_default();
        self.put(&changes, rev)
    }

    fn restore(&self, before: &[(Key, Option<Object>)], rev: u64) -> Result<()> {
        let changes: Vec<_> = before
            .iter()
            .map(|(k, v)| (encode_key(k), v.as_ref().map(Message::encode_to_vec)))
            .collect();
        self.put(&changes, rev)
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        async move {
            self.db.flush_async().await?;
            Ok(())
        }
        .boxed()
    }
}

fn encode_key(key: &Key) -> Vec<u8> {
    let (kind, ns, name) = (key.kind.as_str(), &key.namespace, &key.name);
    let mut k = Vec::with_capacity(kind.len() + ns.len() + name.len() + 2);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use crate::store::Store;
    use twinset_proto::v1::{Namespace, ObjectMeta};
    use twinset_proto::Kind;

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

        let store = crate::store::testing::reopen(|| SledStore::open(dir.path(), 100)).await;
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
