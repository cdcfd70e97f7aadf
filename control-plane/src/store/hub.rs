//! Watch fan-out: a history of recent changes, bounded in count and in encoded bytes,
//! plus the live watchers. Engines publish each durable write here in revision order.
//!
//! Each change is one reference-counted value shared by the history and every watcher's
//! queue: publishing costs a pointer per watcher, never a copy (a watcher copies the
//! change out when it reads it). Each watcher's queue is bounded in changes and in
//! bytes; a watcher that falls behind either bound is dropped and watches again from its
//! last revision (from the history, or "too old" and a relist), so a client that stops
//! reading holds at most its bound, not the store's traffic.

use super::{Error, Result, WatchEvent, Watcher};
use prost::Message;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How many unread changes a watcher may hold before it is dropped.
const WATCHER_BUFFER: usize = 1024;
/// How many bytes (by [`weight`]) of unread changes a watcher may hold before it is dropped.
pub const WATCHER_BYTES: usize = 16 * 1024 * 1024;

/// One published change as the history and the queues hold it, with its [`weight`].
pub type Shared = (Arc<WatchEvent>, usize);

/// The default bound on the bytes the history holds (objects as encoded protobuf).
pub const DEFAULT_HISTORY_BYTES: usize = 64 * 1024 * 1024;

/// What a kept change is counted as: its object's encoded size plus the event itself.
fn weight(ev: &WatchEvent) -> usize {
    ev.object.encoded_len() + std::mem::size_of::<WatchEvent>()
}

/// The history ring and the subscribers.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

/// A live watcher as the hub sees it: its queue and the bytes waiting in it.
#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<Shared>,
    /// The weight of the changes queued and not yet read (the watcher subtracts on read).
    queued: Arc<AtomicUsize>,
    /// Told to the watcher when it is dropped for falling behind.
    fell_behind: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Inner {
    history: VecDeque<Shared>,
    /// The sum of [`weight`] over `history`.
    bytes: usize,
    subscribers: Vec<Subscriber>,
    /// The revision of the last published change (or the store's revision at open).
    published: u64,
    closed: bool,
}

impl Hub {
    /// A hub keeping at most `capacity` changes and `max_bytes` of them (the oldest go
    /// first), starting at revision `rev` (nothing before is kept).
    pub fn new(capacity: usize, max_bytes: usize, rev: u64) -> Hub {
        Hub {
            capacity: capacity.max(1),
            max_bytes,
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                bytes: 0,
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
            let w = weight(&ev);
            let rev = ev.rev;
            let ev = Arc::new(ev);
            inner.published = inner.published.max(rev);
            inner.subscribers.retain(|s| {
                // Counted before the send, so the reader's subtraction never comes first;
                // taken back when the change is not queued after all.
                if s.queued.fetch_add(w, Ordering::AcqRel) + w > WATCHER_BYTES {
                    s.queued.fetch_sub(w, Ordering::AcqRel);
                    s.fell_behind.store(true, Ordering::Release);
                    tracing::warn!(
                        rev,
                        "a watcher fell {WATCHER_BYTES} bytes behind; ending its watch"
                    );
                    return false;
                }
                let sent = s.tx.try_send((ev.clone(), w));
                if sent.is_err() {
                    s.queued.fetch_sub(w, Ordering::AcqRel);
                }
                match sent {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.fell_behind.store(true, Ordering::Release);
                        tracing::warn!(
                            rev,
                            "a watcher fell {WATCHER_BUFFER} changes behind; ending its watch"
                        );
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            inner.bytes += w;
            inner.history.push_back((ev, w));
            while inner.history.len() > self.capacity || inner.bytes > self.max_bytes {
                let Some((_, old)) = inner.history.pop_front() else {
                    break;
                };
                inner.bytes -= old;
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
        // With nothing kept, only "from the latest published change" can be watched.
        let oldest = match inner.history.front() {
            Some((first, _)) => first.rev - 1,
            None => inner.published,
        };
        if from_rev < oldest || from_rev > applied {
            return Err(Error::TooOld {
                requested: from_rev,
                oldest,
                current: applied,
            });
        }
        let backlog: VecDeque<Arc<WatchEvent>> = inner
            .history
            .iter()
            .filter(|(e, _)| e.rev > from_rev)
            .map(|(e, _)| e.clone())
            .collect();
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let queued = Arc::new(AtomicUsize::new(0));
        let fell_behind = Arc::new(AtomicBool::new(false));
        inner.subscribers.push(Subscriber {
            tx,
            queued: queued.clone(),
            fell_behind: fell_behind.clone(),
        });
        Ok(Watcher::new(backlog, rx, queued, fell_behind, from_rev))
    }

    /// How many watchers are subscribed now.
    pub fn watchers(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// How many changes and bytes the history holds now.
    pub fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.history.len(), inner.bytes)
    }

    /// Ends every watch and refuses new ones.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.subscribers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventType;
    use twinset_proto::v1::{Namespace, Object, ObjectMeta};

    fn big(rev: u64, bytes: usize) -> WatchEvent {
        let object = Object::from(Namespace {
            metadata: Some(ObjectMeta {
                name: format!("ns-{rev}"),
                annotations: [("blob".to_string(), "x".repeat(bytes))].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        WatchEvent {
            r#type: EventType::Added,
            object,
            rev,
        }
    }

    #[test]
    fn history_is_bounded_in_bytes_as_well_as_count() {
        // Room for 1000 changes by count, but only for 4 of these by size.
        let budget = 4 * weight(&big(1, 10_000)) + 100;
        let hub = Hub::new(1000, budget, 0);
        for rev in 1..=20 {
            hub.publish([big(rev, 10_000)]);
            let (_, bytes) = hub.held();
            assert!(bytes <= budget, "{bytes} bytes held");
        }
        let (count, _) = hub.held();
        assert_eq!(count, 4, "the oldest changes went to make room");
        assert!(matches!(hub.watch(15, 20), Err(Error::TooOld { .. })));
        assert!(
            hub.watch(16, 20).is_ok(),
            "the last 4 changes can be resumed"
        );

        // Count still bounds small changes.
        let hub = Hub::new(3, DEFAULT_HISTORY_BYTES, 0);
        for rev in 1..=10 {
            hub.publish([big(rev, 1)]);
        }
        assert_eq!(hub.held().0, 3);

        // One change bigger than the whole budget is not kept at all.
        let hub = Hub::new(10, 100, 0);
        hub.publish([big(1, 1_000)]);
        assert_eq!(hub.held(), (0, 0));
        assert!(
            hub.watch(1, 1).is_ok(),
            "from the latest change still works"
        );
        assert!(matches!(hub.watch(0, 1), Err(Error::TooOld { .. })));
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_dropped_at_its_count_bound() {
        let hub = Hub::new(10, DEFAULT_HISTORY_BYTES, 0);
        let mut stalled = hub.watch(0, 0).unwrap();
        let mut reading = hub.watch(0, 0).unwrap();
        for rev in 1..=WATCHER_BUFFER as u64 {
            hub.publish([big(rev, 1)]);
            assert_eq!(reading.recv().await.unwrap().rev, rev);
        }
        assert_eq!(hub.watchers(), 2, "a full queue is still within its bound");
        hub.publish([big(WATCHER_BUFFER as u64 + 1, 1)]);
        assert_eq!(
            hub.watchers(),
            1,
            "the stalled watcher went, the reading one stays"
        );
        assert_eq!(reading.recv().await.unwrap().rev, WATCHER_BUFFER as u64 + 1);
        // The stalled one still reads what it was given, then ends (and watches again).
        for rev in 1..=WATCHER_BUFFER as u64 {
            assert_eq!(stalled.recv().await.unwrap().rev, rev);
        }
        assert!(stalled.recv().await.is_none());
        assert!(stalled.fell_behind(), "it ended for falling behind");
        assert!(!reading.fell_behind());
        assert_eq!(
            stalled.queued.load(Ordering::Acquire),
            0,
            "every byte read is counted off"
        );
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_dropped_at_its_byte_bound() {
        let hub = Hub::new(4, DEFAULT_HISTORY_BYTES, 0);
        let stalled = hub.watch(0, 0).unwrap();
        let each = weight(&big(1, 1024 * 1024));
        let fit = (WATCHER_BYTES / each) as u64;
        for rev in 1..=fit {
            hub.publish([big(rev, 1024 * 1024)]);
        }
        assert_eq!(hub.watchers(), 1);
        assert!(stalled.queued.load(Ordering::Acquire) <= WATCHER_BYTES);
        hub.publish([big(fit + 1, 1024 * 1024)]);
        assert_eq!(hub.watchers(), 0, "over its bytes, the watcher is dropped");
        // The history keeps only its 4 changes; the dropped watcher's queue is the rest.
        assert_eq!(hub.held().0, 4);
        drop(stalled);
    }
}
