//! The write rules every engine shares: what a create, update or delete does to an
//! object's server-managed metadata and when it is refused. Pure and synchronous:
//! [`State::prepare`] (or a [`Batch`] of several) computes writes without changing
//! anything, [`State::commit`] applies one once the engine has made it durable.

use super::{Error, EventType, Key, Result, WatchEvent};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use twinset_proto::v1::{object::Kind as Variant, Object};
use twinset_proto::Kind;

/// A write asked of the store.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create a new object.
    Create(Object),
    /// Replace an object, optionally only at a revision.
    Update(Object, Option<u64>),
    /// Remove an object, optionally only at a revision.
    Delete(Key, Option<u64>),
}

/// A computed write: the key, the new value (None: removed) and the event it makes.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Where the write lands.
    pub key: Key,
    /// The object after the write; None for a delete.
    pub value: Option<Object>,
    /// The change to publish once the write is durable.
    pub event: WatchEvent,
}

impl Prepared {
    /// What the writer gets back: the object as written (for a delete, its last state).
    pub fn result(&self) -> Object {
        self.value
            .clone()
            .unwrap_or_else(|| self.event.object.clone())
    }
}

/// Every object plus the revision of the last write.
#[derive(Debug, Default)]
pub struct State {
    objects: BTreeMap<Key, Object>,
    rev: u64,
}

/// Several writes computed in order on top of a [`State`] without changing it: each sees
/// the ones before it (a create then an update of one key in one group commit), and the
/// state stays as it was until the engine commits them.
#[derive(Debug)]
pub struct Batch<'a> {
    base: &'a State,
    changes: HashMap<Key, Option<Object>>,
    rev: u64,
}

impl Batch<'_> {
    /// Computes the next write of the batch (one revision after the previous one).
    pub fn prepare(&mut self, op: Op, now: &str) -> Result<Prepared> {
        let p = prepare(op, now, self.rev + 1, |k| match self.changes.get(k) {
            Some(v) => v.as_ref(),
            None => self.base.objects.get(k),
        })?;
        self.rev = p.event.rev;
        self.changes.insert(p.key.clone(), p.value.clone());
        Ok(p)
    }
}

impl State {
    /// A state holding `objects` at revision `rev` (an engine's contents at open).
    pub fn load(objects: impl IntoIterator<Item = Object>, rev: u64) -> State {
        let mut s = State {
            objects: BTreeMap::new(),
            rev,
        };
        for o in objects {
            s.rev = s.rev.max(o.resource_version());
            s.objects.insert(Key::of(&o), o);
        }
        s
    }

    /// The revision of the last write.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The object under a key.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Object> {
        self.objects.get(&Key::new(kind, namespace, name))
    }

    /// The object under `key`.
    pub fn get_key(&self, key: &Key) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Objects of a kind, in one namespace or all, in key order.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Object> {
        self.list_where(kind, namespace, &|_| true)
    }

    /// The objects of [`State::list`] that satisfy `keep`, copying only those.
    pub fn list_where(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        keep: &dyn Fn(&Object) -> bool,
    ) -> Vec<Object> {
        let start = Key::new(kind, namespace.unwrap_or(""), "");
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.kind == kind && namespace.is_none_or(|want| want == k.namespace))
            .filter(|(_, o)| keep(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Computes the next write (revision `self.rev() + 1`) without applying it.
    pub fn prepare(&self, op: Op, now: &str) -> Result<Prepared> {
        prepare(op, now, self.rev + 1, |k| self.objects.get(k))
    }

    /// A batch of writes computed on top of this state (which it leaves unchanged).
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            base: self,
            changes: HashMap::new(),
            rev: self.rev,
        }
    }

    /// Applies a prepared write; it must be the next revision.
    pub fn commit(&mut self, p: &Prepared) {
        debug_assert_eq!(p.event.rev, self.rev + 1);
        self.rev = p.event.rev;
        match &p.value {
            Some(o) => {
                self.objects.insert(p.key.clone(), o.clone());
            }
            None => {
                self.objects.remove(&p.key);
            }
        }
    }
}

/// Computes one write at revision `rev`, reading current objects through `lookup`.
fn prepare<'a>(
    op: Op,
    now: &str,
    rev: u64,
    lookup: impl Fn(&Key) -> Option<&'a Object>,
) -> Result<Prepared> {
    match op {
        Op::Create(mut obj) => {
            let key = checked_key(&obj)?;
            if lookup(&key).is_some() {
                return Err(Error::AlreadyExists {
                    resource: key.kind.group_resource(),
                    name: key.name,
                });
            }
            obj.set_type_meta();
            let m = obj.meta_mut();
            m.uid = uuid::Uuid::new_v4().to_string();
            m.creation_timestamp = now.to_string();
            m.resource_version = rev.to_string();
            m.generation = 1;
            Ok(Prepared {
                key,
                value: Some(obj.clone()),
                event: WatchEvent {
                    r#type: EventType::Added,
                    object: obj,
                    rev,
                },
            })
        }
        Op::Update(mut obj, expected) => {
            let key = checked_key(&obj)?;
            let current = current(lookup(&key), &key, expected)?;
            obj.set_type_meta();
            let bump = spec_bytes(current) != spec_bytes(&obj);
            let cm = current.meta();
            let (uid, created, generation) =
                (cm.uid.clone(), cm.creation_timestamp.clone(), cm.generation);
            let m = obj.meta_mut();
            m.uid = uid;
            m.creation_timestamp = created;
            m.generation = generation.max(1) + i64::from(bump);
            m.resource_version = rev.to_string();
            Ok(Prepared {
                key,
                value: Some(obj.clone()),
                event: WatchEvent {
                    r#type: EventType::Modified,
                    object: obj,
                    rev,
                },
            })
        }
        Op::Delete(key, expected) => {
            let mut last = current(lookup(&key), &key, expected)?.clone();
            last.meta_mut().resource_version = rev.to_string();
            Ok(Prepared {
                key,
                value: None,
                event: WatchEvent {
                    r#type: EventType::Deleted,
                    object: last,
                    rev,
                },
            })
        }
    }
}

/// The current object under `key`, if it is still at `expected` (when given).
fn current<'a>(found: Option<&'a Object>, key: &Key, expected: Option<u64>) -> Result<&'a Object> {
    let current = found.ok_or_else(|| Error::not_found(key.kind, &key.name))?;
    if let Some(expected) = expected {
        let actual = current.resource_version();
        if expected != actual {
            return Err(Error::Conflict {
                resource: key.kind.group_resource(),
                name: key.name.clone(),
                expected,
                actual,
            });
        }
    }
    Ok(current)
}

fn checked_key(o: &Object) -> Result<Key> {
    let kind = o
        .kind_opt()
        .ok_or_else(|| Error::Invalid("the object has no kind".into()))?;
    if o.name().is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no metadata.name",
            kind.as_str()
        )));
    }
    if kind.namespaced() && o.namespace().is_empty() {
        return Err(Error::Invalid(format!(
            "{} {:?} has no metadata.namespace",
            kind.as_str(),
            o.name()
        )));
    }
    if !kind.namespaced() && !o.namespace().is_empty() {
        return Err(Error::Invalid(format!(
            "{} {:?} is cluster-scoped: it takes no namespace",
            kind.as_str(),
            o.name()
        )));
    }
    Ok(Key::of(o))
}

/// The encoded spec (the part whose change bumps metadata.generation).
pub fn spec_bytes(o: &Object) -> Vec<u8> {
    fn enc<M: Message>(m: &Option<M>) -> Vec<u8> {
        m.as_ref().map(Message::encode_to_vec).unwrap_or_default()
    }
    match &o.kind {
        Some(Variant::Namespace(x)) => enc(&x.spec),
        Some(Variant::Node(x)) => enc(&x.spec),
        Some(Variant::Pod(x)) => enc(&x.spec),
        Some(Variant::DaemonSet(x)) => enc(&x.spec),
        Some(Variant::StatefulSet(x)) => enc(&x.spec),
        Some(Variant::Service(x)) => enc(&x.spec),
        Some(Variant::PersistentVolumeClaim(x)) => enc(&x.spec),
        Some(Variant::ControllerRevision(x)) => {
            let mut b = enc(&x.data);
            b.extend(x.revision.to_le_bytes());
            b
        }
        Some(Variant::BootstrapToken(x)) => enc(&x.spec),
        Some(Variant::Event(_)) | None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{DaemonSet, DaemonSetSpec, ObjectMeta, Pod};

    fn ds(name: &str, min_ready: i32) -> Object {
        Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(DaemonSetSpec {
                min_ready_seconds: min_ready,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn write(s: &mut State, op: Op) -> Result<Object> {
        let p = s.prepare(op, "2026-01-01T00:00:00Z")?;
        s.commit(&p);
        Ok(p.result())
    }

    #[test]
    fn a_batch_sees_its_own_writes_and_leaves_the_state_alone() {
        let s = State::default();
        let mut b = s.batch();
        let a = b.prepare(Op::Create(ds("a", 0)), "t").unwrap();
        let a2 = b
            .prepare(Op::Update(ds("a", 3), Some(1)), "t")
            .expect("the update sees the create before it");
        assert_eq!((a.event.rev, a2.event.rev), (1, 2));
        assert_eq!(a2.result().meta().generation, 2);
        let err = b.prepare(Op::Create(ds("a", 0)), "t").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }));
        let gone = b
            .prepare(Op::Delete(Key::of(&ds("a", 0)), Some(2)), "t")
            .unwrap();
        assert_eq!(gone.event.rev, 3);
        assert!(b
            .prepare(Op::Delete(Key::of(&ds("a", 0)), None), "t")
            .is_err());
        assert_eq!(s.rev(), 0);
        assert!(s.get(Kind::DaemonSet, "default", "a").is_none());
    }

    #[test]
    fn generation_bumps_only_on_spec_change() {
        let mut s = State::default();
        let a = write(&mut s, Op::Create(ds("a", 0))).unwrap();
        assert_eq!((a.meta().generation, a.resource_version()), (1, 1));
        let mut labelled = a.clone();
        labelled.meta_mut().labels.insert("x".into(), "y".into());
        let b = write(&mut s, Op::Update(labelled, Some(1))).unwrap();
        assert_eq!((b.meta().generation, b.resource_version()), (1, 2));
        assert_eq!(b.meta().uid, a.meta().uid);
        let c = write(&mut s, Op::Update(ds("a", 5), None)).unwrap();
        assert_eq!(c.meta().generation, 2);
        assert_eq!(
            c.meta().uid,
            a.meta().uid,
            "uid survives a write that omits it"
        );
    }

    #[test]
    fn list_stays_inside_kind_and_namespace() {
        let mut s = State::default();
        write(&mut s, Op::Create(ds("a", 0))).unwrap();
        let mut other = ds("b", 0);
        other.meta_mut().namespace = "zzz".into();
        write(&mut s, Op::Create(other)).unwrap();
        let pod = Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        write(&mut s, Op::Create(pod)).unwrap();
        assert_eq!(s.list(Kind::DaemonSet, None).len(), 2);
        assert_eq!(s.list(Kind::DaemonSet, Some("default")).len(), 1);
        assert_eq!(s.list(Kind::DaemonSet, Some("zz")).len(), 0);
        assert_eq!(s.list(Kind::Pod, None).len(), 1);
    }

    #[test]
    fn refuses_objects_without_a_usable_key() {
        let s = State::default();
        let err = s.prepare(Op::Create(Object::default()), "t").unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        let err = s.prepare(Op::Create(ds("", 0)), "t").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
