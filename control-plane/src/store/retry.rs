//! Read-modify-compare-and-swap, once: [`update_with_retry`] reads an object, lets the
//! caller change it, writes it only if nobody wrote in between, and on a conflict reads
//! again and asks the caller again. [`create_or_update`] also creates the object when
//! it is missing.

use super::{Error, Key, Store};
use twinset_proto::v1::Object;

/// How many times an edit is tried before the last conflict is returned.
pub const ATTEMPTS: usize = 5;

/// What an edit decided about the object it was handed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Change {
    /// Write the edited object.
    Write,
    /// Delete the object (at the revision it was read at).
    Delete,
    /// Nothing to do: write nothing.
    Keep,
}

/// What [`update_with_retry`] or [`create_or_update`] did.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum Outcome {
    /// The object was missing and is now created.
    Created(Object),
    /// The edited object was written.
    Updated(Object),
    /// The object was deleted; its last state.
    Deleted(Object),
    /// The edit wanted no change; the object as read.
    Unchanged(Object),
}

impl Outcome {
    /// The object as it now stands (for a delete: its last state).
    pub fn into_object(self) -> Object {
        match self {
            Outcome::Created(o)
            | Outcome::Updated(o)
            | Outcome::Deleted(o)
            | Outcome::Unchanged(o) => o,
        }
    }

    /// True when something was written.
    pub fn written(&self) -> bool {
        !matches!(self, Outcome::Unchanged(_))
    }
}

/// Reads the object under `key`, hands a copy to `edit` and carries out what it decides,
/// compare-and-swap on the revision read; after a conflict it reads again and asks again
/// (at most [`ATTEMPTS`] times, then the last conflict is the error). A missing object is
/// [`Error::NotFound`].
pub async fn update_with_retry<F>(store: &dyn Store, key: &Key, edit: F) -> Result<Outcome, Error>
where
    F: FnMut(&mut Object) -> Result<Change, Error> + Send,
{
    try_update_with_retry(store, key, edit).await
}

/// [`update_with_retry`] with an edit that may fail with the caller's own error type.
pub async fn try_update_with_retry<E, F>(
    store: &dyn Store,
    key: &Key,
    edit: F,
) -> Result<Outcome, E>
where
    E: From<Error>,
    F: FnMut(&mut Object) -> Result<Change, E> + Send,
{
    try_update_with_retry_attempts(store, key, ATTEMPTS, edit).await
}

/// [`try_update_with_retry`] with a bound of its own on the attempts: for an object many
/// writers race on by design (a join token's uses while many machines join at once).
pub async fn try_update_with_retry_attempts<E, F>(
    store: &dyn Store,
    key: &Key,
    attempts: usize,
    edit: F,
) -> Result<Outcome, E>
where
    E: From<Error>,
    F: FnMut(&mut Object) -> Result<Change, E> + Send,
{
    modify(
        store,
        key,
        attempts,
        None::<fn() -> Result<Object, E>>,
        edit,
    )
    .await
}

/// [`update_with_retry`], but a missing object is created from what `create` returns
/// (and when someone else creates it first, that one is edited instead).
pub async fn create_or_update<E, C, F>(
    store: &dyn Store,
    key: &Key,
    create: C,
    edit: F,
) -> Result<Outcome, E>
where
    E: From<Error>,
    C: FnMut() -> Result<Object, E> + Send,
    F: FnMut(&mut Object) -> Result<Change, E> + Send,
{
    create_or_update_attempts(store, key, ATTEMPTS, create, edit).await
}

/// [`create_or_update`] with a bound of its own on the attempts: for writes that many
/// writers race on by design (an Event's count), where five conflicts are no sign of trouble.
pub async fn create_or_update_attempts<E, C, F>(
    store: &dyn Store,
    key: &Key,
    attempts: usize,
    create: C,
    edit: F,
) -> Result<Outcome, E>
where
    E: From<Error>,
    C: FnMut() -> Result<Object, E> + Send,
    F: FnMut(&mut Object) -> Result<Change, E> + Send,
{
    modify(store, key, attempts, Some(create), edit).await
}

async fn modify<E, C, F>(
    store: &dyn Store,
    key: &Key,
    attempts: usize,
    mut create: Option<C>,
    mut edit: F,
) -> Result<Outcome, E>
where
    E: From<Error>,
    C: FnMut() -> Result<Object, E> + Send,
    F: FnMut(&mut Object) -> Result<Change, E> + Send,
{
    let (kind, ns, name) = (key.kind, key.namespace.as_str(), key.name.as_str());
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let written = match store.get(kind, ns, name) {
            None => match create.as_mut() {
                None => return Err(Error::not_found(kind, name).into()),
                Some(make) => store.create(make()?).await.map(Outcome::Created),
            },
            Some(current) => {
                let rv = current.resource_version();
                let mut edited = current.clone();
                match edit(&mut edited)? {
                    Change::Keep => return Ok(Outcome::Unchanged(current)),
                    Change::Write => store.update(edited, Some(rv)).await.map(Outcome::Updated),
                    Change::Delete => store
                        .delete(kind, ns, name, Some(rv))
                        .await
                        .map(Outcome::Deleted),
                }
            }
        };
        match written {
            Ok(outcome) => return Ok(outcome),
            Err(e @ (Error::Conflict { .. } | Error::AlreadyExists { .. })) => last = Some(e),
            // Deleted between the read and the write: create it anew.
            Err(e @ Error::NotFound { .. }) if create.is_some() => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    tracing::debug!(object = %key, attempts, "gave up: the object kept changing");
    Err(last.unwrap_or(Error::Closed).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use twinset_proto::Kind;

    use crate::store::testing::labelled_ns as ns;

    fn label(o: &Object) -> &str {
        o.meta().labels.get("l").map(String::as_str).unwrap_or("")
    }

    #[tokio::test]
    async fn retries_after_a_conflict_with_a_fresh_read() {
        let store = MemoryStore::new(100);
        store.create(ns("a", "0")).await.unwrap();
        let key = Key::new(Kind::Namespace, "", "a");
        let calls = AtomicUsize::new(0);
        let out = update_with_retry(&store, &key, |o| {
            // The first time, someone else writes between our read and our write.
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut other = o.clone();
                other.meta_mut().labels.insert("l".into(), "theirs".into());
                futures::executor::block_on(store.update(other, None)).unwrap();
            }
            let seen = label(o).to_string();
            o.meta_mut()
                .labels
                .insert("l".into(), format!("{seen}+mine"));
            Ok(Change::Write)
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(out.written());
        assert_eq!(
            label(&out.into_object()),
            "theirs+mine",
            "the retry edited the fresh object"
        );
    }

    #[tokio::test]
    async fn keep_writes_nothing_delete_deletes_and_missing_is_not_found() {
        let store = MemoryStore::new(100);
        store.create(ns("a", "0")).await.unwrap();
        let key = Key::new(Kind::Namespace, "", "a");
        let rev = store.current_revision();
        let kept = update_with_retry(&store, &key, |_| Ok(Change::Keep))
            .await
            .unwrap();
        assert!(matches!(kept, Outcome::Unchanged(_)));
        assert_eq!(store.current_revision(), rev);
        let gone = update_with_retry(&store, &key, |_| Ok(Change::Delete))
            .await
            .unwrap();
        assert!(matches!(gone, Outcome::Deleted(_)));
        let err = update_with_retry(&store, &key, |_| Ok(Change::Write))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        // The edit's own error stops the loop.
        store.create(ns("a", "0")).await.unwrap();
        let err = update_with_retry(&store, &key, |_| Err(Error::Invalid("no".into())))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
    }

    #[tokio::test]
    async fn gives_up_with_the_conflict_when_the_object_never_settles() {
        let store = MemoryStore::new(100);
        store.create(ns("a", "0")).await.unwrap();
        let key = Key::new(Kind::Namespace, "", "a");
        let calls = AtomicUsize::new(0);
        let err = update_with_retry(&store, &key, |o| {
            calls.fetch_add(1, Ordering::SeqCst);
            futures::executor::block_on(store.update(o.clone(), None)).unwrap();
            Ok(Change::Write)
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test]
    async fn create_or_update_creates_when_missing_and_edits_when_present() {
        let store = MemoryStore::new(100);
        let key = Key::new(Kind::Namespace, "", "a");
        fn set(v: &'static str) -> impl FnMut(&mut Object) -> Result<Change, Error> + Send {
            move |o: &mut Object| {
                o.meta_mut().labels.insert("l".into(), v.into());
                Ok(Change::Write)
            }
        }
        let made = create_or_update(&store, &key, || Ok(ns("a", "new")), set("edited"))
            .await
            .unwrap();
        assert!(matches!(&made, Outcome::Created(o) if label(o) == "new"));
        let edited = create_or_update(&store, &key, || Ok(ns("a", "new")), set("edited"))
            .await
            .unwrap();
        assert!(matches!(&edited, Outcome::Updated(o) if label(o) == "edited"));
    }
}
