//! Controllers: level-triggered loops that watch the store, queue object keys and
//! reconcile each key to the next safe step (the kube-rs / Kubernetes model).
//!
//! Each controller keeps its logic in a pure `decide` and a thin async shell. This
//! module holds what the shells share: the work [`Queue`] of typed [`Key`]s (with one
//! merged timer per delayed key), [`work`] and its [`Requeue`], and [`follow`], which
//! turns the store's [`WatchStream`] into [`Observed`] changes. The DaemonSet and
//! StatefulSet controllers share one [`shell`] on top of these.

pub mod daemonset;
pub mod gc;
pub mod history;
pub mod node_lifecycle;
pub mod node_loss;
pub mod placement;
pub mod revision;
pub mod shell;
pub mod statefulset;

use crate::store::{Error as StoreError, Key, Next, Store, WatchEvent, WatchStream};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// What applying `obj` does besides storing it, by kind: the per-kind hook of the generic
/// apply path (a StatefulSet gets its missing headless Service). Returns the notes to show
/// ("service/mysql created"); with `dry_run` it only says what it would do.
pub async fn after_apply(
    store: &dyn Store,
    obj: &Object,
    dry_run: bool,
) -> Result<Vec<String>, tonic::Status> {
    match obj.kind() {
        Kind::StatefulSet => Ok(statefulset::service::ensure_service(store, obj, dry_run)
            .await?
            .into_iter()
            .collect()),
        _ => Ok(Vec::new()),
    }
}

/// A deduplicating work queue of keys: a key waiting in the queue is there once, and a
/// key waiting for a timer has one timer (repeated requeues merge into the earliest).
/// A named queue ([`Queue::named`]) reports its depth and its controller's reconcile
/// times as metrics.
#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<QueueInner>,
    notify: Notify,
    meter: Option<Meter>,
}

/// A controller's instruments: the keys ready in its queue, the time of its reconciles.
#[derive(Debug)]
struct Meter {
    depth: prometheus_client::metrics::gauge::Gauge,
    reconcile: prometheus_client::metrics::histogram::Histogram,
}

#[derive(Debug, Default)]
struct QueueInner {
    ready: VecDeque<Key>,
    queued: HashSet<Key>,
    delayed: DelayQueue<Key>,
    timers: HashMap<Key, delay_queue::Key>,
}

impl QueueInner {
    fn push(&mut self, key: Key) -> bool {
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
            true
        } else {
            false
        }
    }
}

impl Queue {
    /// A queue whose depth and reconcile times are reported for `controller` (its
    /// component name, `daemonset-controller`).
    pub fn named(controller: &'static str) -> Queue {
        let label = crate::metrics::ControllerLabel { controller };
        let m = crate::metrics::metrics();
        Queue {
            meter: Some(Meter {
                depth: m.queue_depth.get_or_create_owned(&label),
                reconcile: m.reconcile.get_or_create_owned(&label),
            }),
            ..Queue::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports how many keys are ready (under the lock that changed it).
    fn gauge(&self, inner: &QueueInner) {
        if let Some(m) = &self.meter {
            m.depth
                .set(i64::try_from(inner.ready.len()).unwrap_or(i64::MAX));
        }
    }

    /// Records one reconcile of this queue's controller that took `took`.
    pub fn reconciled(&self, took: Duration) {
        if let Some(m) = &self.meter {
            m.reconcile.observe(took.as_secs_f64());
        }
    }

    /// Queues a key unless it is already waiting.
    pub fn add(&self, key: Key) {
        let mut inner = self.lock();
        if inner.push(key) {
            self.gauge(&inner);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Queues a key after `delay`. A key already waiting for a timer keeps one timer, the
    /// earlier of the two.
    pub fn add_after(&self, key: Key, delay: Duration) {
        let mut inner = self.lock();
        let when = tokio::time::Instant::now() + delay;
        match inner.timers.get(&key).copied() {
            Some(timer) => {
                if when < inner.delayed.deadline(&timer) {
                    inner.delayed.reset_at(&timer, when);
                }
            }
            None => {
                let timer = inner.delayed.insert_at(key.clone(), when);
                inner.timers.insert(key, timer);
            }
        }
        drop(inner);
        // The waiting `next` polls the timers again with the new deadline.
        self.notify.notify_one();
    }

    /// How many keys wait for a timer.
    pub fn delayed(&self) -> usize {
        self.lock().timers.len()
    }

    /// The next key, waiting for one (or for a timer). Cancel-safe.
    pub async fn next(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ready = poll_fn(|cx| {
                let mut inner = self.lock();
                while let Poll::Ready(Some(expired)) = inner.delayed.poll_expired(cx) {
                    let key = expired.into_inner();
                    inner.timers.remove(&key);
                    inner.push(key);
                }
                let next = match inner.ready.pop_front() {
                    Some(key) => {
                        inner.queued.remove(&key);
                        Poll::Ready(key)
                    }
                    None => Poll::Pending,
                };
                self.gauge(&inner);
                next
            });
            tokio::select! {
                key = ready => return key,
                _ = &mut notified => {}
            }
        }
    }
}

/// When a reconcile wants to look at its object again, whatever changes meanwhile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "a requeue the caller drops never happens"]
pub struct Requeue(Option<Duration>);

impl Requeue {
    /// Only when something changes.
    pub const NEVER: Requeue = Requeue(None);

    /// After `d` (also when nothing changes).
    pub fn after(d: Duration) -> Requeue {
        Requeue(Some(d))
    }

    /// The sooner of this and a look after `d`.
    pub fn sooner(self, d: Duration) -> Requeue {
        Requeue(Some(self.0.map_or(d, |r| r.min(d))))
    }

    /// The delay, if any.
    pub fn delay(self) -> Option<Duration> {
        self.0
    }
}

/// The worker loop every controller shares: takes keys off `queue`, reconciles each in a
/// span naming the object, requeues when the reconcile asks to be woken later, and retries
/// failures with per-key backoff (a conflict, a stale read, quietly). Stops when `token` is
/// cancelled. One loop per controller, so no object is ever reconciled twice at once.
pub async fn work<F, Fut>(queue: Arc<Queue>, token: CancellationToken, reconcile: F)
where
    F: Fn(Key) -> Fut,
    Fut: std::future::Future<Output = Result<Requeue, StoreError>>,
{
    use tracing::Instrument as _;
    let mut backoff = Backoff::default();
    loop {
        let key = tokio::select! {
            _ = token.cancelled() => break,
            key = queue.next() => key,
        };
        let span = tracing::info_span!(
            "reconcile",
            kind = key.kind.as_str(),
            namespace = %key.namespace,
            name = %key.name
        );
        let started = std::time::Instant::now();
        let reconciled = reconcile(key.clone()).instrument(span.clone()).await;
        queue.reconciled(started.elapsed());
        match reconciled {
            Ok(requeue) => {
                backoff.succeeded(&key);
                if let Some(after) = requeue.delay() {
                    queue.add_after(key, after);
                }
            }
            Err(e) => {
                let delay = backoff.failed(&key);
                span.in_scope(|| match e {
                    StoreError::Conflict { .. } => {
                        tracing::debug!(error = %e, retry_in = ?delay, "stale read; reconciling again")
                    }
                    _ => tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed"),
                });
                queue.add_after(key, delay);
            }
        }
    }
}

/// Per-key exponential backoff for failed reconciles.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: HashMap<Key, u32>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure (10 ms doubling, at most 30 s).
    pub fn failed(&mut self, key: &Key) -> Duration {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_millis(10u64.saturating_mul(1u64 << (*n - 1).min(12)))
            .min(Duration::from_secs(30))
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&mut self, key: &Key) {
        self.failures.remove(key);
    }
}

/// What [`follow`] hands its callback.
#[derive(Debug)]
pub enum Observed {
    /// One change from the store.
    Event(Box<WatchEvent>),
    /// Changes may have been missed (first start, or history ran out): look at everything.
    Resync,
}

/// Follows the store's changes until `token` is cancelled or the store closes: first an
/// [`Observed::Resync`], then every change; when the history runs out, another Resync.
pub async fn follow(
    store: Arc<dyn Store>,
    token: CancellationToken,
    mut on_change: impl FnMut(Observed) + Send,
) {
    // The callback lists what it needs itself; the watch goes on from the revision read
    // before, so a change between the two is seen again (harmless: level-triggered).
    let mut stream = WatchStream::list_then_watch(store, |s| ((), s.current_revision()));
    loop {
        let next = tokio::select! {
            _ = token.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Ok(Next::Listed(())) => on_change(Observed::Resync),
            Ok(Next::Event(ev)) => on_change(Observed::Event(ev)),
            // The store closed.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Key {
        Key::new(Kind::DaemonSet, "default", name)
    }

    #[tokio::test]
    async fn queue_deduplicates_and_keeps_order() {
        let q = Queue::default();
        q.add(k("a"));
        q.add(k("b"));
        q.add(k("a"));
        assert_eq!(q.next().await, k("a"));
        assert_eq!(q.next().await, k("b"));
        q.add(k("a"));
        assert_eq!(q.next().await, k("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_requeues_of_one_key_merge_into_the_earliest() {
        let q = Arc::new(Queue::default());
        let start = tokio::time::Instant::now();
        for i in 0..100 {
            q.add_after(k("a"), Duration::from_secs(10 + i));
        }
        q.add_after(k("a"), Duration::from_secs(5));
        q.add_after(k("b"), Duration::from_secs(7));
        assert_eq!(q.delayed(), 2, "one timer per key");
        assert_eq!(q.next().await, k("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(q.next().await, k("b"));
        assert_eq!(start.elapsed(), Duration::from_secs(7));
        assert_eq!(q.delayed(), 0);
        // Nothing else fires: the 100 requeues of "a" were one.
        let more = tokio::time::timeout(Duration::from_secs(3600), q.next()).await;
        assert!(more.is_err(), "got {more:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_next_sees_a_new_timer_and_a_key_ready_meanwhile_is_not_doubled() {
        let q = Arc::new(Queue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add_after(k("a"), Duration::from_secs(1));
        assert_eq!(waiter.await.unwrap(), k("a"));
        // Queued now and due by timer: taken once.
        q.add(k("b"));
        q.add_after(k("b"), Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(q.next().await, k("b"));
        assert!(tokio::time::timeout(Duration::from_secs(60), q.next())
            .await
            .is_err());
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.failed(&k("k")), Duration::from_millis(10));
        assert_eq!(b.failed(&k("k")), Duration::from_millis(20));
        assert_eq!(b.failed(&k("k")), Duration::from_millis(40));
        for _ in 0..30 {
            b.failed(&k("k"));
        }
        assert_eq!(b.failed(&k("k")), Duration::from_secs(30));
        b.succeeded(&k("k"));
        assert_eq!(b.failed(&k("k")), Duration::from_millis(10));
    }

    #[test]
    fn requeue_keeps_the_sooner() {
        assert_eq!(Requeue::NEVER.delay(), None);
        let r = Requeue::NEVER.sooner(Duration::from_secs(5));
        assert_eq!(
            r.sooner(Duration::from_secs(9)).delay(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            r.sooner(Duration::from_secs(1)).delay(),
            Some(Duration::from_secs(1))
        );
    }
}
