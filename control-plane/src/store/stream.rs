//! One resumable watch: list, watch from the list's revision, resume from the last
//! revision seen when a watch ends (its watcher fell behind), and list again when the
//! history no longer reaches back ("too old"). The controllers, the DNS sync, the agents'
//! assignment streams and the Cluster Watch all follow the store through it.

use super::{Error, Keep, Store, WatchEvent, Watcher};
use std::convert::Infallible;
use std::sync::Arc;

/// What a [`WatchStream`] hands out next.
#[derive(Debug)]
pub enum Next<L> {
    /// A fresh list (first start, or the history ran out): what the lister returned.
    /// Changes after it follow.
    Listed(L),
    /// One change, in revision order.
    Event(Box<WatchEvent>),
}

/// Reads what the caller needs from the store and the revision that read is consistent
/// at (the watch goes on from there; changes after it may repeat what it saw).
pub type Lister<L> = Box<dyn FnMut(&dyn Store) -> (L, u64) + Send>;

/// A store watch that survives watcher drops and history gaps. [`WatchStream::next`] is
/// cancel-safe: dropping it between changes loses nothing.
pub struct WatchStream<L> {
    store: Arc<dyn Store>,
    lister: Option<Lister<L>>,
    /// The revision the caller has seen up to; None: list first.
    rev: Option<u64>,
    watcher: Option<Watcher>,
    /// Which changes the stream wants, tested by the store before it queues them.
    keep: Option<Keep>,
}

impl<L> std::fmt::Debug for WatchStream<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("rev", &self.rev)
            .field("relists", &self.lister.is_some())
            .finish()
    }
}

impl<L> WatchStream<L> {
    /// Lists through `list` first, then watches; lists again whenever it must.
    pub fn list_then_watch(
        store: Arc<dyn Store>,
        list: impl FnMut(&dyn Store) -> (L, u64) + Send + 'static,
    ) -> Self {
        Self::resume(store, None, list)
    }

    /// Watches on from revision `rev` when the history still reaches back there (None:
    /// lists first); lists through `list` whenever it must.
    pub fn resume(
        store: Arc<dyn Store>,
        rev: Option<u64>,
        list: impl FnMut(&dyn Store) -> (L, u64) + Send + 'static,
    ) -> Self {
        WatchStream {
            store,
            lister: Some(Box::new(list)),
            rev,
            watcher: None,
            keep: None,
        }
    }

    /// Only the changes `keep` wants, filtered by the store before they are queued.
    pub fn filtered(mut self, keep: Keep) -> Self {
        self.keep = Some(keep);
        self.watcher = None;
        self
    }

    /// The revision of the last change or list handed out.
    pub fn revision(&self) -> Option<u64> {
        self.rev
    }

    /// The next list or change. Errors: [`Error::Closed`] when the store closed; for a
    /// stream without a lister, [`Error::TooOld`] when the history ran out.
    pub async fn next(&mut self) -> Result<Next<L>, Error> {
        loop {
            let watcher = match &mut self.watcher {
                Some(w) => w,
                None => {
                    let Some(rev) = self.rev else {
                        return Ok(self.relist());
                    };
                    match self.store.watch_where(rev, self.keep.clone()) {
                        Ok(w) => self.watcher.insert(w),
                        Err(Error::TooOld { .. }) if self.lister.is_some() => {
                            tracing::info!(rev, "watch history ran out; listing again");
                            return Ok(self.relist());
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match watcher.recv().await {
                Some(ev) => {
                    self.rev = Some(ev.rev);
                    return Ok(Next::Event(Box::new(ev)));
                }
                // A client's watch that fell behind ends "too old" (the client relists);
                // an internal follower, or any watch when the store is closing, watches
                // again from `rev` (from the history, or by listing).
                None if self.lister.is_none() && watcher.fell_behind() => {
                    self.watcher = None;
                    return Err(Error::FellBehind {
                        rev: self.rev.unwrap_or_default(),
                    });
                }
                None => self.watcher = None,
            }
        }
    }

    fn relist(&mut self) -> Next<L> {
        let lister = self
            .lister
            .as_mut()
            .expect("only streams with a lister start without a revision");
        let (listed, at) = lister(&*self.store);
        self.rev = Some(at);
        self.watcher = None;
        Next::Listed(listed)
    }
}

impl WatchStream<Infallible> {
    /// Changes after `rev` only, never a list: when the history no longer reaches back the
    /// stream fails with [`Error::TooOld`] and the caller relists (a client's watch).
    pub fn watch_from(store: Arc<dyn Store>, rev: u64) -> Self {
        WatchStream {
            store,
            lister: None,
            rev: Some(rev),
            watcher: None,
            keep: None,
        }
    }

    /// Starts the watch now (instead of at the first [`WatchStream::next_event`]), so a
    /// revision the history no longer holds is reported at once.
    pub fn open(&mut self) -> Result<(), Error> {
        if self.watcher.is_none() {
            let rev = self.rev.unwrap_or_default();
            self.watcher = Some(self.store.watch_where(rev, self.keep.clone())?);
        }
        Ok(())
    }

    /// The next change (see [`WatchStream::next`]).
    pub async fn next_event(&mut self) -> Result<WatchEvent, Error> {
        match self.next().await? {
            Next::Event(ev) => Ok(*ev),
            Next::Listed(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::time::Duration;
    use twinset_proto::v1::{Namespace, Object, ObjectMeta};
    use twinset_proto::Kind;

    fn ns(name: &str) -> Object {
        Object::from(Namespace {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn names(store: &dyn Store) -> (Vec<String>, u64) {
        let (objs, rev) = store.list(Kind::Namespace, None);
        (objs.iter().map(|o| o.name().to_string()).collect(), rev)
    }

    async fn next<L>(s: &mut WatchStream<L>) -> Next<L> {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("in time")
            .expect("open")
    }

    #[tokio::test]
    async fn a_clients_watch_that_falls_behind_ends_too_old() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10_000));
        let mut s = WatchStream::watch_from(store.clone(), 0);
        s.open().unwrap();
        // The client reads nothing while 1 100 changes land: more than its queue holds.
        for i in 0..1100 {
            store.create(ns(&format!("n{i}"))).await.unwrap();
        }
        let mut delivered = 0u64;
        let end = loop {
            match s.next_event().await {
                Ok(ev) => {
                    delivered += 1;
                    assert_eq!(ev.rev, delivered, "in order, none skipped");
                }
                Err(e) => break e,
            }
        };
        // Dropped at its bound, the watch lets go of its queue rather than deliver it.
        assert_eq!(delivered, 0, "what was queued is let go");
        assert!(matches!(end, Error::FellBehind { rev: 0 }), "{end:?}");
        assert!(end.to_string().starts_with("too old resource version"));
    }

    #[tokio::test]
    async fn lists_then_watches_and_relists_when_too_old() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(2));
        store.create(ns("a")).await.unwrap();
        let mut s = WatchStream::list_then_watch(store.clone(), names);
        assert!(matches!(next(&mut s).await, Next::Listed(l) if l == ["a"]));
        store.create(ns("b")).await.unwrap();
        assert!(matches!(next(&mut s).await, Next::Event(e) if e.object.name() == "b"));
        assert_eq!(s.revision(), Some(2));

        // Drop the live watcher and write past the history: the stream relists.
        s.watcher = None;
        for n in ["c", "d", "e"] {
            store.create(ns(n)).await.unwrap();
        }
        match next(&mut s).await {
            Next::Listed(l) => assert_eq!(l, ["a", "b", "c", "d", "e"]),
            Next::Event(e) => panic!("expected a relist, got {e:?}"),
        }
        store.create(ns("f")).await.unwrap();
        assert!(matches!(next(&mut s).await, Next::Event(e) if e.object.name() == "f"));
    }

    #[tokio::test]
    async fn resumes_from_the_history_without_relisting() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        store.create(ns("a")).await.unwrap();
        store.create(ns("b")).await.unwrap();
        let mut s = WatchStream::resume(store.clone(), Some(1), names);
        assert!(matches!(next(&mut s).await, Next::Event(e) if e.object.name() == "b"));
    }

    #[tokio::test]
    async fn a_stream_without_a_lister_reports_too_old_and_closed() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1));
        store.create(ns("a")).await.unwrap();
        store.create(ns("b")).await.unwrap();
        let mut s = WatchStream::watch_from(store.clone(), 0);
        assert!(matches!(s.next_event().await, Err(Error::TooOld { .. })));
        let mut s = WatchStream::watch_from(store.clone(), 2);
        store.close().await;
        assert!(matches!(s.next_event().await, Err(Error::Closed)));
    }
}
