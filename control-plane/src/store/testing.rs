//! Behaviour every [`Store`] engine must show; each engine's tests run it with a
//! history of 4 changes.

use super::{Error, EventType, Store};
use std::time::Duration;
use twinset_proto::v1::{Namespace, Object, ObjectMeta, Pod, PodSpec};
use twinset_proto::Kind;

/// Opens a sled directory again once the store that had it is gone: sled's own
/// background threads let go of the directory's lock a moment after the last handle is
/// dropped, so the open is retried until it succeeds or a deadline passes.
pub async fn reopen<T>(open: impl Fn() -> Result<T, Error>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(v) => return v,
            Err(Error::Backend(e))
                if e.contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// A Namespace with the label `l=<label>`: the object the store tests write.
pub fn labelled_ns(name: &str, label: &str) -> Object {
    Object::from(Namespace {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("l".to_string(), label.to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pod(name: &str, node: &str) -> Object {
    Object::from(Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_name: node.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn next(w: &mut super::Watcher) -> super::WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.recv())
        .await
        .expect("a watch event in time")
        .expect("watch open")
}

/// Runs the shared checks against an empty store whose history holds 4 changes.
pub async fn conformance(store: &dyn Store) {
    // Revisions: one per write, in order; resourceVersion is the write's revision.
    let start = store.current_revision();
    let mut live = store.watch(start).unwrap();
    let a = store.create(pod("a", "n1")).await.unwrap();
    assert_eq!(a.resource_version(), start + 1);
    assert_eq!(a.meta().generation, 1);
    assert!(!a.meta().uid.is_empty() && !a.meta().creation_timestamp.is_empty());
    let err = store.create(pod("a", "n1")).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(err.to_string(), "pods \"a\" already exists");
    assert_eq!(
        store.current_revision(),
        start + 1,
        "a refused write takes no revision"
    );

    // Compare-and-swap.
    let a2 = store
        .update(pod("a", "n2"), Some(a.resource_version()))
        .await
        .unwrap();
    assert_eq!(a2.resource_version(), start + 2);
    assert_eq!(a2.meta().generation, 2);
    let err = store
        .update(pod("a", "n3"), Some(a.resource_version()))
        .await
        .unwrap_err();
    match &err {
        Error::Conflict {
            expected, actual, ..
        } => assert_eq!((*expected, *actual), (start + 1, start + 2)),
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(err.to_string().contains("pods \"a\""), "{err}");
    let err = store
        .delete(Kind::Pod, "default", "a", Some(start + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }));
    assert!(matches!(
        store.update(pod("zz", ""), None).await,
        Err(Error::NotFound { .. })
    ));

    // Namespaced listing and the revision it is consistent at.
    let ns = Object::from(Namespace {
        metadata: Some(ObjectMeta {
            name: "other".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    store.create(ns).await.unwrap();
    let (pods, rev) = store.list(Kind::Pod, Some("default"));
    assert_eq!(pods.len(), 1);
    assert_eq!(rev, start + 3);
    let deleted = store
        .delete(Kind::Pod, "default", "a", Some(start + 2))
        .await
        .unwrap();
    assert_eq!(deleted.resource_version(), start + 4);
    assert!(store.get(Kind::Pod, "default", "a").is_none());

    // The live watch saw everything in order.
    let seen: Vec<(EventType, u64)> = [
        next(&mut live).await,
        next(&mut live).await,
        next(&mut live).await,
        next(&mut live).await,
    ]
    .into_iter()
    .map(|e| (e.r#type, e.rev))
    .collect();
    assert_eq!(
        seen,
        vec![
            (EventType::Added, start + 1),
            (EventType::Modified, start + 2),
            (EventType::Added, start + 3),
            (EventType::Deleted, start + 4),
        ]
    );

    // Resume from a revision still in the history.
    let mut resumed = store.watch(start + 2).unwrap();
    assert_eq!(next(&mut resumed).await.rev, start + 3);
    assert_eq!(next(&mut resumed).await.rev, start + 4);
    store.create(pod("b", "n1")).await.unwrap();
    assert_eq!(next(&mut resumed).await.rev, start + 5);

    // Too old: the history holds 4 changes (start+2..=start+5), so start+1 is the oldest resumable.
    assert!(store.watch(start + 1).is_ok());
    let err = store.watch(start).unwrap_err();
    assert!(matches!(err, Error::TooOld { .. }), "{err}");
    assert!(err.to_string().contains("relist"), "{err}");
    // Relist, then watch from the list's revision.
    let (pods, rev) = store.list(Kind::Pod, None);
    assert_eq!(pods.len(), 1);
    let mut relisted = store.watch(rev).unwrap();
    store.create(pod("c", "n1")).await.unwrap();
    let ev = next(&mut relisted).await;
    assert_eq!(
        (ev.r#type, ev.object.name(), ev.rev),
        (EventType::Added, "c", rev + 1)
    );
    // A revision from the future is refused too.
    assert!(matches!(store.watch(rev + 100), Err(Error::TooOld { .. })));
}
