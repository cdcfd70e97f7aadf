//! Keeps the DNS [`Zone`] current: lists Services and Pods, then follows the store's
//! [`WatchStream`]; after each batch of changes it rebuilds only the namespaces they
//! touched. When the history runs out the stream lists again and the zone is rebuilt.

use super::records::{NamespaceRecords, Zone};
use crate::store::{Error as StoreError, EventType, Next, Store, WatchStream};
use futures::FutureExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twinset_proto::v1::{Object, Pod, Service};
use twinset_proto::Kind;

/// How long to wait before retrying a watch the store refused for a reason other than
/// history (a backend error).
const RETRY: Duration = Duration::from_millis(500);

/// The zone shared by the follower (one writer) and the request handler (readers).
pub type SharedZone = Arc<RwLock<Zone>>;

/// namespace → name → (revision of the last write seen, object).
type ByNamespace<T> = HashMap<String, BTreeMap<String, (u64, T)>>;

/// The Services and Pods the zone is built from, per namespace.
#[derive(Debug, Default)]
struct Objects {
    services: ByNamespace<Service>,
    pods: ByNamespace<Pod>,
}

impl Objects {
    /// Everything from the store now, and the revision to watch from.
    fn list(store: &dyn Store) -> (Objects, u64) {
        // The revision is read first: a write between the two lists is seen again by the
        // watch, and applying a change twice is harmless.
        let rev = store.current_revision();
        let mut objects = Objects::default();
        for kind in [Kind::Service, Kind::Pod] {
            for obj in store.list(kind, None).0 {
                let at = obj.resource_version();
                objects.apply(EventType::Added, obj, at);
            }
        }
        (objects, rev)
    }

    /// Applies one change made at revision `rev`; returns the namespace it touched (None
    /// for other kinds). A change older than what is already held (a watch replaying what a
    /// list already saw) is ignored.
    fn apply(&mut self, r#type: EventType, obj: Object, rev: u64) -> Option<String> {
        let ns = obj.namespace().to_string();
        let name = obj.name().to_string();
        match obj.kind_opt()? {
            Kind::Service => {
                let svc = obj.into_service()?;
                upsert(&mut self.services, r#type, &ns, name, rev, svc);
            }
            Kind::Pod => {
                let pod = obj.into_pod()?;
                upsert(&mut self.pods, r#type, &ns, name, rev, pod);
            }
            _ => return None,
        }
        Some(ns)
    }

    fn records(&self, ns: &str) -> NamespaceRecords {
        let services = self.services.get(ns).into_iter().flat_map(|m| m.values());
        let pods = self.pods.get(ns).into_iter().flat_map(|m| m.values());
        let (services, pods) = (services.map(|(_, s)| s), pods.map(|(_, p)| p));
        NamespaceRecords::build(ns, services, pods)
    }

    fn namespaces(&self) -> BTreeSet<String> {
        self.services
            .keys()
            .chain(self.pods.keys())
            .cloned()
            .collect()
    }

    /// The whole zone from these objects.
    fn rebuild(&self, zone: &mut Zone) {
        let keep = self.namespaces();
        // Namespaces the zone has that no object names any more.
        let stale: Vec<String> = zone
            .namespaces()
            .filter(|ns| !keep.contains(*ns))
            .map(str::to_string)
            .collect();
        for ns in stale {
            zone.set_namespace(&ns, NamespaceRecords::default());
        }
        for ns in keep {
            zone.set_namespace(&ns, self.records(&ns));
        }
    }
}

fn upsert<T>(
    map: &mut ByNamespace<T>,
    r#type: EventType,
    ns: &str,
    name: String,
    rev: u64,
    value: T,
) {
    let held = map.get(ns).and_then(|m| m.get(&name)).map(|(at, _)| *at);
    if held.is_some_and(|at| at > rev) {
        return;
    }
    if r#type == EventType::Deleted {
        if let Some(m) = map.get_mut(ns) {
            m.remove(&name);
            if m.is_empty() {
                map.remove(ns);
            }
        }
    } else {
        map.entry(ns.to_string())
            .or_default()
            .insert(name, (rev, value));
    }
}

fn write(zone: &SharedZone) -> std::sync::RwLockWriteGuard<'_, Zone> {
    zone.write().unwrap_or_else(|e| e.into_inner())
}

/// What [`prime`] read: the objects the zone was built from and the revision they are at.
#[derive(Debug)]
pub(crate) struct Primed {
    objects: Objects,
    rev: u64,
}

/// Lists Services and Pods into the zone now (so the server's first answer is already
/// right) and returns what [`follow`] goes on from.
pub(crate) fn prime(store: &dyn Store, zone: &SharedZone) -> Primed {
    let (objects, rev) = Objects::list(store);
    objects.rebuild(&mut write(zone));
    Primed { objects, rev }
}

/// Follows the store from where [`prime`] left off until `token` is cancelled or the
/// store closes, keeping `zone` current (a relist rebuilds the whole zone).
pub(crate) async fn follow(
    store: Arc<dyn Store>,
    zone: SharedZone,
    primed: Primed,
    token: CancellationToken,
) {
    let Primed { mut objects, rev } = primed;
    let mut stream = WatchStream::resume(store, Some(rev), Objects::list);
    loop {
        let first = tokio::select! {
            _ = token.cancelled() => return,
            next = stream.next() => next,
        };
        let first = match first {
            Ok(next) => next,
            Err(StoreError::Closed) => {
                tracing::info!("dns: the store closed; records stay as they are");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dns: cannot watch the store; retrying");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        let mut touched = BTreeSet::new();
        for next in drain(first, &mut stream) {
            match next {
                Next::Listed(fresh) => {
                    objects = fresh;
                    objects.rebuild(&mut write(&zone));
                    touched.clear();
                }
                Next::Event(ev) => {
                    if let Some(ns) = objects.apply(ev.r#type, ev.object, ev.rev) {
                        touched.insert(ns);
                    }
                }
            }
        }
        if touched.is_empty() {
            continue;
        }
        let records: Vec<(String, NamespaceRecords)> = touched
            .into_iter()
            .map(|ns| {
                let r = objects.records(&ns);
                (ns, r)
            })
            .collect();
        let mut zone = write(&zone);
        for (ns, r) in records {
            if zone.set_namespace(&ns, r) {
                tracing::debug!(namespace = %ns, serial = zone.serial(), "dns: records changed");
            }
        }
    }
}

/// The first change and every change already waiting behind it: one rebuild per burst.
fn drain(first: Next<Objects>, stream: &mut WatchStream<Objects>) -> Vec<Next<Objects>> {
    let mut batch = vec![first];
    // `next` is cancel-safe: a change it had not returned stays queued.
    while batch.len() < 4096 {
        match stream.next().now_or_never() {
            Some(Ok(next)) => batch.push(next),
            _ => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use twinset_proto::v1::{ObjectMeta, PodCondition, PodSpec, PodStatus, ServiceSpec};

    fn svc(ns: &str, name: &str) -> Object {
        Object::from(Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: "None".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(ns: &str, name: &str, sub: &str, ip: &str) -> Object {
        Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                hostname: name.into(),
                subdomain: sub.into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn a(zone: &SharedZone, name: &str) -> super::super::records::Answer {
        zone.read().unwrap().lookup(name)
    }

    async fn eventually(zone: &SharedZone, name: &str, want: super::super::records::Answer) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = a(zone, name);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: still {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn found(ip: &[&str]) -> super::super::records::Answer {
        super::super::records::Answer::Exists {
            addresses: ip.iter().map(|s| s.parse().unwrap()).collect(),
            apex: false,
        }
    }

    #[test]
    fn a_replayed_older_change_does_not_undo_a_newer_one() {
        let mut o = Objects::default();
        o.apply(EventType::Added, svc("db", "mysql"), 1);
        o.apply(
            EventType::Modified,
            pod("db", "m-0", "mysql", "127.128.0.2"),
            12,
        );
        let host = |o: &Objects| o.records("db").services["mysql"].hosts.get("m-0").cloned();
        let mut older = pod("db", "m-0", "mysql", "127.128.0.2");
        older.as_pod_mut().unwrap().status = None;
        o.apply(EventType::Modified, older, 11);
        assert!(host(&o).is_some(), "an older state is ignored");
        o.apply(
            EventType::Deleted,
            pod("db", "m-0", "mysql", "127.128.0.2"),
            11,
        );
        assert!(host(&o).is_some(), "an older delete is ignored");
        o.apply(
            EventType::Deleted,
            pod("db", "m-0", "mysql", "127.128.0.2"),
            13,
        );
        assert!(host(&o).is_none());
        assert_eq!(o.apply(EventType::Added, Object::default(), 14), None);
    }

    #[tokio::test]
    async fn follows_creates_updates_and_deletes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
        store.create(svc("db", "mysql")).await.unwrap();
        store
            .create(pod("db", "m-0", "mysql", "127.128.0.2"))
            .await
            .unwrap();
        let zone: SharedZone = Arc::new(RwLock::new(Zone::new("cluster.local").unwrap()));
        let primed = prime(&*store, &zone);
        assert_eq!(
            a(&zone, "m-0.mysql.db.svc.cluster.local"),
            found(&["127.128.0.2"])
        );
        let token = CancellationToken::new();
        let task = tokio::spawn(follow(store.clone(), zone.clone(), primed, token.clone()));

        store
            .create(pod("db", "m-1", "mysql", "127.128.0.3"))
            .await
            .unwrap();
        eventually(
            &zone,
            "mysql.db.svc.cluster.local",
            found(&["127.128.0.2", "127.128.0.3"]),
        )
        .await;

        store.delete(Kind::Pod, "db", "m-0", None).await.unwrap();
        eventually(
            &zone,
            "m-0.mysql.db.svc.cluster.local",
            super::super::records::Answer::NxDomain,
        )
        .await;

        store
            .delete(Kind::Service, "db", "mysql", None)
            .await
            .unwrap();
        eventually(
            &zone,
            "db.svc.cluster.local",
            super::super::records::Answer::NxDomain,
        )
        .await;

        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn relists_when_the_history_runs_out() {
        // A history of 2 changes: a burst of writes while the follower is not running
        // leaves it too far behind.
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(2));
        let zone: SharedZone = Arc::new(RwLock::new(Zone::new("cluster.local").unwrap()));
        let primed = prime(&*store, &zone);
        store.create(svc("db", "mysql")).await.unwrap();
        for i in 0..5 {
            store
                .create(pod(
                    "db",
                    &format!("m-{i}"),
                    "mysql",
                    &format!("127.128.0.{}", i + 2),
                ))
                .await
                .unwrap();
        }
        assert!(matches!(
            store.watch(primed.rev),
            Err(StoreError::TooOld { .. })
        ));
        let token = CancellationToken::new();
        let task = tokio::spawn(follow(store.clone(), zone.clone(), primed, token.clone()));
        eventually(
            &zone,
            "m-4.mysql.db.svc.cluster.local",
            found(&["127.128.0.6"]),
        )
        .await;
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stops_when_the_store_closes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
        let zone: SharedZone = Arc::new(RwLock::new(Zone::new("cluster.local").unwrap()));
        let primed = prime(&*store, &zone);
        let task = tokio::spawn(follow(
            store.clone(),
            zone,
            primed,
            CancellationToken::new(),
        ));
        store.close().await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("follower ends after the store closes")
            .unwrap();
    }
}
