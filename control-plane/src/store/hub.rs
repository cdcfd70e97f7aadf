//! Watch fan-out: a bounded history of recent changes plus the live watchers.
//! Engines publish each durable write here in revision order.

use super::{Error, Result, WatchEvent, Watcher};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// How many unread changes a watcher may hold before it is dropped (it then re-watches
/// from its last revision, from the history or by relisting).
const WATCHER_BUFFER: usize = 8192;

/// The history ring and the subscribers.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    history: VecDeque<WatchEvent>,
    subscribers: Vec<mpsc::Sender<WatchEvent>>,
    /// The revision of the last published change (or the store's revision at open).
    published: u64,
    closed: bool,
}

impl Hub {
    /// A hub keeping `capacity` changes, starting at revision `rev` (nothing before is kept).
    pub fn new(capacity: usize, rev: u64) -> Hub {
        Hub {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                subscribers: Vec::new(),
                published: rev,
                closed: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every step is one push/pop).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records durable changes (in revision order) and hands them to every watcher.
    pub fn publish(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let mut inner = self.lock();
        for ev in events {
            inner.published = inner.published.max(ev.rev);
            inner
                .subscribers
                .retain(|tx| match tx.try_send(ev.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            rev = ev.rev,
                            "a watcher fell {WATCHER_BUFFER} changes behind; ending its watch"
                        );
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            inner.history.push_back(ev);
            if inner.history.len() > self.capacity {
                inner.history.pop_front();
            }
        }
    }

    /// A watcher for changes after `from_rev`; `applied` is the engine's latest revision
    /// (possibly not yet published).
    pub fn watch(&self, from_rev: u64, applied: u64) -> Result<Watcher> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Error::Closed);
        }
        let oldest = match inner.history.front() {
            Some(first) => first.rev - 1,
            None => inner.published,
        };
        if from_rev < oldest || from_rev > applied {
            return Err(Error::TooOld {
                requested: from_rev,
                oldest,
                current: applied,
            });
        }
        let backlog: VecDeque<WatchEvent> = inner
            .history
            .iter()
            .filter(|e| e.rev > from_rev)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        inner.subscribers.push(tx);
        Ok(Watcher::new(backlog, rx, from_rev))
    }

    /// Ends every watch and refuses new ones.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.subscribers.clear();
    }
}
