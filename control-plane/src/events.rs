//! Recording Events: what `describe` shows under "Events" (Type, Reason, Age, From,
//! Message). Best effort: a failed event write is logged, never fails the caller.
//!
//! Bounded as Kubernetes bounds them: a repeat of an event (same involved object,
//! source, type, reason and message: [`aggregate_key`]) increments the stored Event's
//! `count` and `lastTimestamp` instead of adding an object, and [`expire`] deletes Events
//! not seen for the event TTL (`--event-ttl`, default one hour).

use crate::store::{create_or_update_attempts, Change, Error as StoreError, Key, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Event, EventSource, Object, ObjectMeta, ObjectReference};
use twinset_proto::Kind;

/// How long an Event lives after it was last seen, unless configured (kube-apiserver's
/// `--event-ttl` default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);

/// How many times a record retries a write that lost a race. Each lost race means another
/// record of the same event was written, so a burst of N concurrent repeats needs at most N.
const ATTEMPTS: usize = 100;

/// Normal events (the usual outcome).
pub const NORMAL: &str = "Normal";
/// Warning events (something went wrong).
pub const WARNING: &str = "Warning";

/// Who reports an event: the component ("daemonset-controller", "kubelet") and host.
#[derive(Clone, Debug)]
pub struct Source {
    /// The "From" column.
    pub component: String,
    /// The node, for agent events.
    pub host: String,
}

impl Source {
    /// A control-plane component (no host).
    pub fn component(name: &str) -> Source {
        Source {
            component: name.to_string(),
            host: String::new(),
        }
    }
}

/// Builds the Event object for `involved` (not yet stored).
pub fn build(
    involved: &Object,
    r#type: &str,
    reason: &str,
    message: &str,
    source: &Source,
) -> Event {
    let m = involved.meta();
    let now = twinset_proto::time::now();
    let namespace = if m.namespace.is_empty() {
        "default".to_string()
    } else {
        m.namespace.clone()
    };
    let mut event = Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: Some(ObjectMeta {
            namespace,
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: involved.kind().as_str().into(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            api_version: involved.kind().api_version().into(),
            resource_version: m.resource_version.clone(),
            field_path: String::new(),
        }),
        reason: reason.into(),
        message: message.into(),
        source: Some(EventSource {
            component: source.component.clone(),
            host: source.host.clone(),
        }),
        first_timestamp: now.clone(),
        last_timestamp: now,
        count: 1,
        r#type: r#type.into(),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
    };
    let name = aggregate_name(&event);
    if let Some(meta) = event.metadata.as_mut() {
        meta.name = name;
    }
    event
}

/// Kubernetes' event aggregation key (client-go's getEventKey): the fields that make two
/// events the same event seen again.
pub fn aggregate_key(ev: &Event) -> String {
    let source = ev.source.clone().unwrap_or_default();
    let r = ev.involved_object.clone().unwrap_or_default();
    [
        source.component.as_str(),
        &source.host,
        &r.kind,
        &r.namespace,
        &r.name,
        &r.field_path,
        &r.uid,
        &r.api_version,
        &ev.r#type,
        &ev.reason,
        &ev.message,
    ]
    .join("\0")
}

/// The stored name of an event: `<involved object>.<16 hex digits>`, the digits a
/// FNV-1a hash of its [`aggregate_key`], so every repeat finds the same object (also
/// after a restart, and from any component).
pub fn aggregate_name(ev: &Event) -> String {
    let involved = ev.involved_object.as_ref().map_or("", |r| r.name.as_str());
    let hash = aggregate_key(ev)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{involved}.{hash:016x}")
}

fn namespace_of(ev: &Event) -> &str {
    ev.metadata.as_ref().map_or("", |m| m.namespace.as_str())
}

/// Stores `event`, or counts it on the stored Event it repeats: `count` grows by the
/// event's count and `lastTimestamp` becomes the later of the two (Kubernetes' event
/// correlator). The name is taken from [`aggregate_name`]; on the unlikely hash collision
/// with another event the event keeps a timestamped name of its own.
pub async fn record_event(store: &dyn Store, mut event: Event) -> Result<(), StoreError> {
    let ns = namespace_of(&event).to_string();
    let name = aggregate_name(&event);
    event.metadata.get_or_insert_with(Default::default).name = name.clone();
    let key = aggregate_key(&event);
    let counted = create_or_update_attempts(
        store,
        &Key::new(Kind::Event, ns, name.clone()),
        ATTEMPTS,
        || Ok(Object::from(event.clone())),
        |obj: &mut Object| {
            let Some(seen) = obj.as_event_mut() else {
                return Err(Recorded::Collision);
            };
            if aggregate_key(seen) != key {
                return Err(Recorded::Collision);
            }
            seen.count = seen.count.max(1).saturating_add(event.count.max(1));
            if twinset_proto::time::parse(&event.last_timestamp)
                > twinset_proto::time::parse(&seen.last_timestamp)
            {
                seen.last_timestamp = event.last_timestamp.clone();
            }
            Ok(Change::Write)
        },
    )
    .await;
    match counted {
        Ok(_) => Ok(()),
        Err(Recorded::Store(e)) => Err(e),
        // Another event hashed to this name: this one keeps a timestamped name of its own.
        Err(Recorded::Collision) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            if let Some(m) = event.metadata.as_mut() {
                m.name = format!("{name}.{nanos:x}");
            }
            store.create(Object::from(event)).await.map(drop)
        }
    }
}

/// Why counting an event on its aggregate did not go through.
enum Recorded {
    Store(StoreError),
    Collision,
}

impl From<StoreError> for Recorded {
    fn from(e: StoreError) -> Self {
        Recorded::Store(e)
    }
}

/// Records an event about `involved`.
pub async fn record(
    store: &dyn Store,
    involved: &Object,
    r#type: &str,
    reason: &str,
    message: &str,
    source: &Source,
) {
    let event = build(involved, r#type, reason, message, source);
    if let Err(e) = record_event(store, event).await {
        tracing::warn!(object = %involved.describe(), reason, error = %e, "cannot record event");
    }
}

/// Records an event in the background, without waiting for it: controllers' events are
/// best effort and must not slow down or fail a reconcile.
pub fn record_later(
    store: &std::sync::Arc<dyn Store>,
    involved: &Object,
    r#type: &'static str,
    reason: &'static str,
    message: String,
    component: &'static str,
) {
    let (store, involved) = (store.clone(), involved.clone());
    tokio::spawn(async move {
        record(
            &*store,
            &involved,
            r#type,
            reason,
            &message,
            &Source::component(component),
        )
        .await;
    });
}

/// The time an event was last seen (its lastTimestamp, else firstTimestamp, else when
/// it was stored).
fn last_seen(ev: &Event) -> Option<SystemTime> {
    [
        ev.last_timestamp.as_str(),
        &ev.first_timestamp,
        ev.metadata
            .as_ref()
            .map_or("", |m| m.creation_timestamp.as_str()),
    ]
    .into_iter()
    .find_map(twinset_proto::time::parse)
}

/// Whether `ev` was last seen at least `ttl` before `now`. An event with no readable
/// time cannot be aged and counts as expired.
pub fn is_expired(ev: &Event, now: SystemTime, ttl: Duration) -> bool {
    last_seen(ev).is_none_or(|t| now.duration_since(t).is_ok_and(|age| age >= ttl))
}

/// How often [`expire`] looks for expired events: a tenth of the TTL, between 1 s and
/// 1 min, so an event outlives its TTL by at most that much.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Deletes every event expired at `now`; returns how many went. Each delete is a
/// compare-and-swap, so an event counted again meanwhile stays.
pub async fn sweep(store: &dyn Store, now: SystemTime, ttl: Duration) -> usize {
    let expired = store.list_where(Kind::Event, None, &|o| {
        o.as_event().is_some_and(|e| is_expired(e, now, ttl))
    });
    let mut deleted = 0;
    for obj in expired {
        match store
            .delete(
                Kind::Event,
                obj.namespace(),
                obj.name(),
                Some(obj.resource_version()),
            )
            .await
        {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(event = %obj.describe(), error = %e, "cannot delete expired event")
            }
        }
    }
    deleted
}

/// Deletes events older than `ttl` every [`sweep_interval`] until `shutdown` fires.
pub async fn expire(store: Arc<dyn Store>, ttl: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(sweep_interval(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let deleted = sweep(&*store, SystemTime::now(), ttl).await;
        if deleted > 0 {
            tracing::debug!(deleted, ?ttl, "expired events deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::DaemonSet;
    use twinset_proto::Kind;

    #[tokio::test]
    async fn records_an_event_next_to_its_object() {
        let store = MemoryStore::new(10);
        let ds = Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                namespace: "kube-system".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        record(
            &store,
            &ds,
            NORMAL,
            "SuccessfulCreate",
            "Created pod: node-monitor-abcde",
            &Source::component("daemonset-controller"),
        )
        .await;
        let (events, _) = store.list(Kind::Event, Some("kube-system"));
        let ev = events[0].as_event().unwrap();
        assert!(ev
            .metadata
            .as_ref()
            .unwrap()
            .name
            .starts_with("node-monitor."));
        assert_eq!(ev.involved_object.as_ref().unwrap().kind, "DaemonSet");
        assert_eq!(ev.involved_object.as_ref().unwrap().uid, "u");
        assert_eq!(
            ev.source.as_ref().unwrap().component,
            "daemonset-controller"
        );
        assert_eq!(
            (ev.reason.as_str(), ev.count, ev.r#type.as_str()),
            ("SuccessfulCreate", 1, "Normal")
        );
    }

    fn pod(uid: &str) -> Object {
        Object::from(twinset_proto::v1::Pod {
            metadata: Some(ObjectMeta {
                name: "crash".into(),
                namespace: "default".into(),
                uid: uid.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn kubelet() -> Source {
        Source {
            component: "kubelet".into(),
            host: "node1".into(),
        }
    }

    const BACKOFF: &str = "Back-off restarting failed container c in pod crash_default(u1)";

    fn events(store: &MemoryStore) -> Vec<Event> {
        store
            .list(Kind::Event, None)
            .0
            .into_iter()
            .filter_map(Object::into_event)
            .collect()
    }

    /// A crash loop's BackOff, reported again and again, is one Event with a count.
    #[tokio::test]
    async fn repeats_aggregate_into_one_event() {
        let store = MemoryStore::new(100);
        for _ in 0..30 {
            record(&store, &pod("u1"), WARNING, "BackOff", BACKOFF, &kubelet()).await;
        }
        let evs = events(&store);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        let ev = &evs[0];
        assert_eq!((ev.reason.as_str(), ev.count), ("BackOff", 30));
        assert!(!ev.first_timestamp.is_empty());
        assert!(
            twinset_proto::time::parse(&ev.first_timestamp)
                <= twinset_proto::time::parse(&ev.last_timestamp)
        );
        let name = &ev.metadata.as_ref().unwrap().name;
        assert!(
            name.starts_with("crash.") && name.len() == "crash.".len() + 16,
            "{name}"
        );
    }

    /// Another reason, message, type, source or object instance is another event.
    #[tokio::test]
    async fn the_aggregate_key_tells_events_apart() {
        let store = MemoryStore::new(100);
        let other_host = Source {
            component: "kubelet".into(),
            host: "node2".into(),
        };
        let cases: [(&str, &str, &str, &str, &Source); 6] = [
            ("u1", WARNING, "BackOff", BACKOFF, &kubelet()),
            (
                "u1",
                WARNING,
                "BackOff",
                "Back-off restarting failed container d",
                &kubelet(),
            ),
            ("u1", WARNING, "Unhealthy", BACKOFF, &kubelet()),
            ("u1", NORMAL, "BackOff", BACKOFF, &kubelet()),
            ("u1", WARNING, "BackOff", BACKOFF, &other_host),
            ("u2", WARNING, "BackOff", BACKOFF, &kubelet()),
        ];
        for _ in 0..2 {
            for (uid, t, reason, message, source) in cases {
                record(&store, &pod(uid), t, reason, message, source).await;
            }
        }
        let evs = events(&store);
        assert_eq!(evs.len(), cases.len());
        assert!(evs.iter().all(|e| e.count == 2), "{evs:#?}");
    }

    /// Concurrent repeats (controllers record in the background) lose no count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_repeats_count_every_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let ev = build(&pod("u1"), WARNING, "BackOff", BACKOFF, &kubelet());
                    record_event(&*store, ev).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (evs, _) = store.list(Kind::Event, None);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].as_event().unwrap().count, 32);
    }

    fn at(ev: &mut Event, t: &str) {
        ev.first_timestamp = t.into();
        ev.last_timestamp = t.into();
    }

    #[test]
    fn expiry_counts_from_the_last_time_seen() {
        let now = twinset_proto::time::parse("2026-06-01T12:00:00Z").unwrap();
        let hour = Duration::from_secs(3600);
        let mut ev = build(&pod("u1"), WARNING, "BackOff", BACKOFF, &kubelet());
        at(&mut ev, "2026-06-01T10:00:00Z");
        assert!(is_expired(&ev, now, hour));
        ev.last_timestamp = "2026-06-01T11:30:00Z".into();
        assert!(!is_expired(&ev, now, hour), "seen again 30 min ago");
        ev.last_timestamp = "2026-06-01T11:00:00Z".into();
        assert!(is_expired(&ev, now, hour), "exactly the TTL");
        ev.last_timestamp.clear();
        ev.first_timestamp = "2026-06-01T11:59:00Z".into();
        assert!(
            !is_expired(&ev, now, hour),
            "firstTimestamp when lastTimestamp is missing"
        );
        ev.first_timestamp.clear();
        assert!(
            is_expired(&ev, now, hour),
            "no readable time: cannot be aged"
        );
        assert_eq!(sweep_interval(hour), Duration::from_secs(60));
        assert_eq!(
            sweep_interval(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
    }

    /// The sweeper task deletes expired events, keeps fresh ones and stops on its token.
    #[tokio::test(start_paused = true)]
    async fn the_sweeper_deletes_expired_events_until_cancelled() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        let now = SystemTime::now();
        let mut old = build(&pod("u1"), WARNING, "BackOff", BACKOFF, &kubelet());
        at(
            &mut old,
            &twinset_proto::time::format(now - Duration::from_secs(7200)),
        );
        let mut fresh = build(&pod("u2"), WARNING, "BackOff", BACKOFF, &kubelet());
        at(&mut fresh, &twinset_proto::time::format(now));
        record_event(&*store, old).await.unwrap();
        record_event(&*store, fresh).await.unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(expire(store.clone(), DEFAULT_TTL, token.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while store.list(Kind::Event, None).0.len() != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the old event stayed"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (left, _) = store.list(Kind::Event, None);
        let left = left[0].as_event().unwrap();
        assert_eq!(left.involved_object.as_ref().unwrap().uid, "u2");
        token.cancel();
        task.await.unwrap();
    }
}
