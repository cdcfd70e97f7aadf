//! The object store: every object of the cluster, filed by kind/namespace/name, with
//! a global revision per write, compare-and-swap updates and a resumable watch.
//!
//! [`Store`] is the seam between the API/controllers and a storage engine:
//! [`durable::DurableStore`] over [`sled::SledBackend`] is the durable engine,
//! [`memory::MemoryStore`] the one unit tests use. Both share the write rules in
//! [`state`] and the watch fan-out in [`hub`], so they cannot drift apart.
//!
//! What every user of a store shares: [`Key`], [`retry::update_with_retry`] for
//! read-modify-compare-and-swap, and [`stream::WatchStream`] for list-then-watch.

pub mod durable;
pub mod hub;
mod key;
pub mod memory;
pub mod retry;
pub mod sled;
pub mod state;
pub mod stream;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::VecDeque;
use std::sync::Arc;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

pub use hub::Hub;
pub use key::Key;
pub use retry::{
    create_or_update, create_or_update_attempts, try_update_with_retry,
    try_update_with_retry_attempts, update_with_retry, Change, Outcome,
};
pub use stream::{Next, WatchStream};

/// Every object of a kind, unwrapped to its type (`Object::into_pod`, ...): what the
/// controllers read their snapshots with.
pub fn list_typed<T>(
    store: &dyn Store,
    kind: Kind,
    namespace: Option<&str>,
    into: fn(Object) -> Option<T>,
) -> Vec<T> {
    store
        .list(kind, namespace)
        .0
        .into_iter()
        .filter_map(into)
        .collect()
}

/// Store results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the store. Messages read like the Kubernetes API server's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object under that key.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// "daemonsets.apps", "pods", ...
        resource: String,
        /// The object's name.
        name: String,
    },
    /// Create of a key that is taken.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// "daemonsets.apps", "pods", ...
        resource: String,
        /// The object's name.
        name: String,
    },
    /// A compare-and-swap write with a stale resourceVersion.
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified \
         (resourceVersion {expected} given, current is {actual}); please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// "daemonsets.apps", "pods", ...
        resource: String,
        /// The object's name.
        name: String,
        /// The revision the writer based its change on.
        expected: u64,
        /// The object's current revision.
        actual: u64,
    },
    /// A watch asked for revisions the bounded history no longer holds.
    #[error("too old resource version: {requested} (oldest available is {oldest}, current is {current}); relist and watch again")]
    TooOld {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision a watch can still resume from.
        oldest: u64,
        /// The current revision.
        current: u64,
    },
    /// A watch that fell behind its queue's bound was ended: watch again from a fresh list.
    #[error("too old resource version: {rev} (this watch fell behind the changes); relist and watch again")]
    FellBehind {
        /// The revision of the last change the watch delivered.
        rev: u64,
    },
    /// The object handed to a write is not usable (empty object, missing name).
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Backend(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// A NotFound error for a kind and name.
    pub fn not_found(kind: Kind, name: &str) -> Error {
        Error::NotFound {
            resource: kind.group_resource(),
            name: name.to_string(),
        }
    }
}

impl From<::sled::Error> for Error {
    fn from(e: ::sled::Error) -> Self {
        Error::Backend(e.to_string())
    }
}

/// The three kinds of change a watch reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
}

impl EventType {
    /// "ADDED", "MODIFIED" or "DELETED", as the API spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A watcher's filter: which changes it wants. The hub calls it once per change under its
/// lock, so it must be cheap and must not block.
pub type Keep = Arc<dyn Fn(&WatchEvent) -> bool + Send + Sync>;

/// One change, tagged with the revision of the write that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub r#type: EventType,
    /// The object after the write (for Deleted: its last state, resourceVersion = the delete's revision).
    pub object: Object,
    /// The global store revision of the write.
    pub rev: u64,
}

/// A live watch: first the kept history after the requested revision, then every new
/// change in revision order.
#[derive(Debug)]
pub struct Watcher {
    backlog: VecDeque<Arc<WatchEvent>>,
    /// The changes the hub queued for this watcher (shared with the hub).
    queue: Arc<hub::Queue>,
    after: u64,
}

impl Watcher {
    pub(crate) fn new(
        backlog: VecDeque<Arc<WatchEvent>>,
        queue: Arc<hub::Queue>,
        after: u64,
    ) -> Self {
        Watcher {
            backlog,
            queue,
            after,
        }
    }

    /// True once the watch ended because it fell behind its queue's bound (rather than
    /// because the store closed).
    pub fn fell_behind(&self) -> bool {
        self.queue.ended() == Some(hub::End::FellBehind)
    }

    /// The next change. `None` means the watch ended (the store closed, or this watcher
    /// fell too far behind and the hub let go of its queue): watch again from the last
    /// revision seen.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        if self.fell_behind() {
            self.backlog.clear();
            return None;
        }
        if let Some(ev) = self.backlog.pop_front() {
            self.after = ev.rev;
            return Some(Arc::unwrap_or_clone(ev));
        }
        loop {
            let ev = self.queue.pop().await.ok()?;
            // Changes applied before the watch started but published after it are skipped.
            if ev.rev > self.after {
                self.after = ev.rev;
                // The copy is made here, by the reader, never by the store's writer.
                return Some(Arc::unwrap_or_clone(ev));
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The hub stops queueing for it and forgets it at its next change.
        self.queue.end(hub::End::Dropped);
    }
}

/// The storage engine behind the control plane. Writes return once durable; reads and
/// watches see every acknowledged write and nothing that is not (yet) durable.
#[tonic::async_trait]
pub trait Store: Send + Sync {
    /// The object under kind/namespace/name (namespace "" for cluster-scoped kinds).
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object>;

    /// Every object of a kind (in one namespace, or all), sorted by namespace and name,
    /// with the revision the list is consistent at (watch from there).
    fn list(&self, kind: Kind, namespace: Option<&str>) -> (Vec<Object>, u64);

    /// The objects [`Store::list`] would return that satisfy `keep`; an engine that holds
    /// objects in memory tests them in place and copies only those kept.
    fn list_where(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        keep: &dyn Fn(&Object) -> bool,
    ) -> Vec<Object> {
        self.list(kind, namespace)
            .0
            .into_iter()
            .filter(|o| keep(o))
            .collect()
    }

    /// Creates an object: sets uid, creationTimestamp, resourceVersion and generation 1.
    async fn create(&self, object: Object) -> Result<Object>;

    /// Replaces an object; with `expected_rv` only if it is still at that revision.
    /// Keeps uid and creationTimestamp; bumps generation when the spec changed.
    async fn update(&self, object: Object, expected_rv: Option<u64>) -> Result<Object>;

    /// Removes an object (only if still at `expected_rv`, when given); returns its last state.
    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        expected_rv: Option<u64>,
    ) -> Result<Object>;

    /// The revision of the latest write.
    fn current_revision(&self) -> u64;

    /// Changes after `from_rev`; [`Error::TooOld`] when the history no longer reaches back there.
    fn watch(&self, from_rev: u64) -> Result<Watcher> {
        self.watch_where(from_rev, None)
    }

    /// The changes after `from_rev` that `keep` wants (None: all), filtered before they
    /// are queued for the watcher; errors as [`Store::watch`].
    fn watch_where(&self, from_rev: u64, keep: Option<Keep>) -> Result<Watcher>;

    /// Stops accepting writes, waits for pending ones to be durable and ends every watch.
    async fn close(&self);
}
