//! Watch fan-out: a history of recent changes, bounded in count and in encoded bytes,
//! plus the live watchers. Engines publish each durable write here in revision order.
//!
//! Each change is one reference-counted value shared by the history and every watcher's
//! queue: publishing costs a pointer per watcher, never a copy (a watcher copies the
//! change out when it reads it). Each watcher's queue is bounded in changes and in
//! bytes; a watcher that falls behind either bound is dropped and watches again from its
//! last revision (from the history, or "too old" and a relist), so a client that stops
//! reading holds at most its bound, not the store's traffic. A watcher's filter ([`Keep`])
//! is tested here, before anything is queued for it: a watcher pays only for the changes
//! it asked for.

use super::{Error, Keep, Result, WatchEvent, Watcher};
use prost::Message;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

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

/// Why a watcher's queue takes no more changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It fell behind its bound: the hub let go of its changes.
    FellBehind,
    /// The store closed.
    Closed,
    /// The watcher went away.
    Dropped,
}

/// One watcher's queue of changes, shared by the hub (which pushes) and the watcher
/// (which pops). The hub can end it and let go of everything in it at once, so a
/// watcher that stops reading holds nothing once it is dropped.
#[derive(Debug, Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    ready: Notify,
    /// Set once it ended: what the hub checks for watchers a change does not concern.
    over: AtomicBool,
}

#[derive(Debug, Default)]
struct QueueState {
    changes: VecDeque<Shared>,
    /// The sum of [`weight`] over `changes`.
    bytes: usize,
    ended: Option<End>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every step under the lock is one push, pop or clear: consistent after a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a change unless the queue is over a bound (then ends it, lets go of its
    /// changes and says so) or already ended. False: drop this subscriber.
    fn push(&self, change: &Shared) -> bool {
        let mut st = self.lock();
        if st.ended.is_some() {
            return false;
        }
        if st.changes.len() >= WATCHER_BUFFER || st.bytes + change.1 > WATCHER_BYTES {
            tracing::warn!(
                rev = change.0.rev,
                queued = st.changes.len(),
                bytes = st.bytes,
                "a watcher fell behind ({WATCHER_BUFFER} changes or {WATCHER_BYTES} bytes); ending its watch"
            );
            st.changes = VecDeque::new();
            st.bytes = 0;
            st.ended = Some(End::FellBehind);
            self.over.store(true, Ordering::Release);
            drop(st);
            self.ready.notify_one();
            return false;
        }
        st.bytes += change.1;
        st.changes.push_back(change.clone());
        drop(st);
        self.ready.notify_one();
        true
    }

    /// Ends the queue (unless it already ended) and lets go of what it holds.
    pub fn end(&self, why: End) {
        let mut st = self.lock();
        st.ended.get_or_insert(why);
        self.over.store(true, Ordering::Release);
        st.changes = VecDeque::new();
        st.bytes = 0;
        drop(st);
        self.ready.notify_one();
    }

    /// The next change, or why there will be none.
    pub async fn pop(&self) -> Result<Arc<WatchEvent>, End> {
        loop {
            {
                let mut st = self.lock();
                if let Some(end) = st.ended {
                    return Err(end);
                }
                if let Some((ev, w)) = st.changes.pop_front() {
                    st.bytes -= w;
                    return Ok(ev);
                }
            }
            // One reader: a notification sent while it was not waiting is kept for it.
            self.ready.notified().await;
        }
    }

    /// Why the queue ended, if it did.
    pub fn ended(&self) -> Option<End> {
        self.lock().ended
    }

    /// Whether it ended (without taking the lock).
    fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// The changes and bytes waiting in it.
    pub fn held(&self) -> (usize, usize) {
        let st = self.lock();
        (st.changes.len(), st.bytes)
    }
}

/// The history ring and the subscribers.
#[derive(Debug)]
pub struct Hub {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

/// A live watcher as the hub sees it: its queue and its filter.
struct Subscriber {
    queue: Arc<Queue>,
    /// Which changes it wants (None: all).
    keep: Option<Keep>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("queue", &self.queue)
            .field("filtered", &self.keep.is_some())
            .finish()
    }
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
            let change = (ev, w);
            inner.subscribers.retain(|s| {
                if s.keep.as_ref().is_some_and(|keep| !keep(&change.0)) {
                    // Not wanted: nothing queued, but a watcher that went away still goes.
                    return !s.queue.is_over();
                }
                s.queue.push(&change)
            });
            let (ev, w) = change;
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

    /// A watcher for the changes after `from_rev` that `keep` wants (None: all);
    /// `applied` is the engine's latest revision (possibly not yet published).
    pub fn watch(&self, from_rev: u64, applied: u64, keep: Option<Keep>) -> Result<Watcher> {
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
            .filter(|(e, _)| e.rev > from_rev && keep.as_ref().is_none_or(|keep| keep(e)))
            .map(|(e, _)| e.clone())
            .collect();
        let queue = Arc::new(Queue::default());
        inner.subscribers.push(Subscriber {
            queue: queue.clone(),
            keep,
        });
        Ok(Watcher::new(backlog, queue, from_rev))
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
        for s in inner.subscribers.drain(..) {
            s.queue.end(End::Closed);
        }
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
        assert!(matches!(hub.watch(15, 20, None), Err(Error::TooOld { .. })));
        assert!(
            hub.watch(16, 20, None).is_ok(),
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
            hub.watch(1, 1, None).is_ok(),
            "from the latest change still works"
        );
        assert!(matches!(hub.watch(0, 1, None), Err(Error::TooOld { .. })));
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_dropped_at_its_count_bound() {
        let hub = Hub::new(10, DEFAULT_HISTORY_BYTES, 0);
        let mut stalled = hub.watch(0, 0, None).unwrap();
        let mut reading = hub.watch(0, 0, None).unwrap();
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
        // The hub let go of the stalled one's queue when it dropped it; it ends (and
        // watches again or relists).
        assert_eq!(stalled.queue.held(), (0, 0), "nothing held for it any more");
        assert!(stalled.recv().await.is_none());
        assert!(stalled.fell_behind(), "it ended for falling behind");
        assert!(!reading.fell_behind());
        assert_eq!(stalled.queue.held(), (0, 0), "everything queued is let go");
    }

    #[test]
    fn a_watcher_that_goes_away_is_forgotten_even_when_nothing_concerns_it() {
        let hub = Hub::new(10, DEFAULT_HISTORY_BYTES, 0);
        let nothing: Keep = Arc::new(|_: &WatchEvent| false);
        for _ in 0..100 {
            drop(hub.watch(0, 0, Some(nothing.clone())).unwrap());
        }
        assert_eq!(hub.watchers(), 100);
        hub.publish([big(1, 1)]);
        assert_eq!(hub.watchers(), 0);
    }

    #[tokio::test]
    async fn a_watchers_filter_is_tested_before_anything_is_queued() {
        let hub = Hub::new(10, DEFAULT_HISTORY_BYTES, 0);
        let odd: Keep = Arc::new(|ev: &WatchEvent| ev.rev % 2 == 1);
        let nothing: Keep = Arc::new(|_: &WatchEvent| false);
        let mut odd = hub.watch(0, 0, Some(odd)).unwrap();
        let quiet = hub.watch(0, 0, Some(nothing)).unwrap();
        // Far more changes than a queue holds: the filtered-out ones cost the quiet
        // watcher nothing, so it never falls behind.
        let total = 3 * WATCHER_BUFFER as u64;
        for rev in 1..=total {
            hub.publish([big(rev, 1)]);
            if rev % 2 == 1 {
                assert_eq!(odd.recv().await.unwrap().rev, rev);
            }
        }
        assert_eq!(hub.watchers(), 2);
        assert_eq!(quiet.queue.held(), (0, 0));
        assert!(!quiet.fell_behind());
        // The history a new watcher starts from is filtered too.
        let even: Keep = Arc::new(|ev: &WatchEvent| ev.rev.is_multiple_of(2));
        let mut late = hub.watch(total - 4, total, Some(even)).unwrap();
        assert_eq!(late.recv().await.unwrap().rev, total - 2);
        assert_eq!(late.recv().await.unwrap().rev, total);
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_dropped_at_its_byte_bound() {
        let hub = Hub::new(4, DEFAULT_HISTORY_BYTES, 0);
        let stalled = hub.watch(0, 0, None).unwrap();
        let each = weight(&big(1, 1024 * 1024));
        let fit = (WATCHER_BYTES / each) as u64;
        for rev in 1..=fit {
            hub.publish([big(rev, 1024 * 1024)]);
        }
        assert_eq!(hub.watchers(), 1);
        assert!(stalled.queue.held().1 <= WATCHER_BYTES);
        hub.publish([big(fit + 1, 1024 * 1024)]);
        assert_eq!(hub.watchers(), 0, "over its bytes, the watcher is dropped");
        assert_eq!(stalled.queue.held(), (0, 0));
        // The history keeps only its 4 changes; the dropped watcher's queue is the rest.
        assert_eq!(hub.held().0, 4);
        drop(stalled);
    }
}
