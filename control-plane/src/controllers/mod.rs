//! Controllers: level-triggered loops that watch the store, queue object keys and
//! reconcile each key to the next safe step (the kube-rs / Kubernetes model).
//!
//! Each controller keeps its logic in a pure `decide` and a thin async shell. This
//! module holds what the shells share: the work [`Queue`] and [`follow`], which turns
//! the store's watch into a stream of changes with relists when history runs out.

pub mod daemonset;
pub mod gc;
pub mod node_lifecycle;
pub mod placement;
pub mod revision;
pub mod statefulset;

use crate::store::{Error as StoreError, Store, WatchEvent};
use twinset_proto::v1::Object;
use twinset_proto::Kind;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

/// A deduplicating work queue of keys: a key waiting in the queue is there once.
#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
    notify: Notify,
}

impl Queue {
    /// Queues a key unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.1.insert(key.clone()) {
            inner.0.push_back(key);
            self.notify.notify_one();
        }
    }

    /// Queues a key after a delay (until `token` is cancelled).
    pub fn add_after(self: &Arc<Self>, key: String, delay: Duration, token: &CancellationToken) {
        let queue = self.clone();
        let token = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tokio::time::sleep(delay) => queue.add(key),
            }
        });
    }

    /// The next key, waiting for one.
    pub async fn next(&self) -> String {
        loop {
            {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(key) = inner.0.pop_front() {
                    inner.1.remove(&key);
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// The worker loop every controller shares: takes `namespace/name` keys off `queue`,
/// reconciles each in a span naming the object, requeues when the reconcile asks to be
/// woken later, and retries failures with per-key backoff. Stops when `token` is cancelled.
/// One loop per controller, so no object is ever reconciled twice at once.
pub async fn work<F, Fut, E>(
    kind: &'static str,
    queue: Arc<Queue>,
    token: CancellationToken,
    reconcile: F,
) where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Duration>, E>>,
    E: std::fmt::Display,
{
    use tracing::Instrument as _;
    let mut backoff = Backoff::default();
    loop {
        let key = tokio::select! {
            _ = token.cancelled() => break,
            key = queue.next() => key,
        };
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let span = tracing::info_span!("reconcile", kind, namespace = ns, name = name);
        match reconcile(ns.to_string(), name.to_string())
            .instrument(span.clone())
            .await
        {
            Ok(requeue) => {
                backoff.succeeded(&key);
                if let Some(after) = requeue {
                    queue.add_after(key, after, &token);
                }
            }
            Err(e) => {
                let delay = backoff.failed(&key);
                span.in_scope(|| tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed"));
                queue.add_after(key, delay, &token);
            }
        }
    }
}

/// Per-key exponential backoff for failed reconciles.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: HashMap<String, u32>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure (10 ms doubling, at most 30 s).
    pub fn failed(&mut self, key: &str) -> Duration {
        let n = self.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_millis(10u64.saturating_mul(1u64 << (*n - 1).min(12)))
            .min(Duration::from_secs(30))
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// What [`follow`] hands its callback.
#[derive(Debug)]
pub enum Change {
    /// One change from the store.
    Event(Box<WatchEvent>),
    /// Changes may have been missed (first start, or history ran out): look at everything.
    Resync,
}

/// Follows the store's changes until `token` is cancelled or the store closes: first a
/// [`Change::Resync`], then every change; when the watch cannot resume, another Resync.
pub async fn follow(
    store: Arc<dyn Store>,
    token: CancellationToken,
    mut on_change: impl FnMut(Change) + Send,
) {
    let mut rev = store.current_revision();
    on_change(Change::Resync);
    loop {
        let mut watcher = match store.watch(rev) {
            Ok(w) => w,
            Err(StoreError::TooOld { .. }) => {
                rev = store.current_revision();
                on_change(Change::Resync);
                continue;
            }
            Err(_) => return,
        };
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                ev = watcher.recv() => match ev {
                    Some(ev) => {
                        rev = ev.rev;
                        on_change(Change::Event(Box::new(ev)));
                    }
                    // The watch ended (fell behind or store closing): resume from `rev`.
                    None => break,
                },
            }
        }
        if token.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_deduplicates_and_keeps_order() {
        let q = Queue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
        q.add("a");
        assert_eq!(q.next().await, "a");
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.failed("k"), Duration::from_millis(10));
        assert_eq!(b.failed("k"), Duration::from_millis(20));
        assert_eq!(b.failed("k"), Duration::from_millis(40));
        for _ in 0..30 {
            b.failed("k");
        }
        assert_eq!(b.failed("k"), Duration::from_secs(30));
        b.succeeded("k");
        assert_eq!(b.failed("k"), Duration::from_millis(10));
    }
}
