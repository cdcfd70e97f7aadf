//! Uniform access to any object: its kind, metadata and key, whatever its type.

use crate::v1::{object::Kind as Variant, *};
use crate::Kind;

macro_rules! kinds {
    ($( $kind:ident, $ty:ident, $as:ident, $as_mut:ident, $into:ident; )*) => {
        impl Object {
            /// The kind of the object inside. An empty `Object` reports `Namespace`
            /// only in [`Object::kind_opt`]'s absence; use that to tell.
            pub fn kind_opt(&self) -> Option<Kind> {
                match &self.kind {
                    $( Some(Variant::$ty(_)) => Some(Kind::$kind), )*
                    None => None,
                }
            }

            /// The object's metadata (a shared empty one when the object is empty).
            pub fn meta(&self) -> &ObjectMeta {
                static EMPTY: std::sync::OnceLock<ObjectMeta> = std::sync::OnceLock::new();
                let m = match &self.kind {
                    $( Some(Variant::$ty(o)) => o.metadata.as_ref(), )*
                    None => None,
                };
                m.unwrap_or_else(|| EMPTY.get_or_init(ObjectMeta::default))
            }

            /// Mutable metadata, created when missing. Panics on an empty `Object`,
            /// which no decoder or store ever produces.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match &mut self.kind {
                    $( Some(Variant::$ty(o)) => o.metadata.get_or_insert_with(Default::default), )*
                    None => panic!("meta_mut on an empty Object"),
                }
            }

            /// Fills apiVersion and kind, as every object read from the API carries them.
            pub fn set_type_meta(&mut self) {
                match &mut self.kind {
                    $( Some(Variant::$ty(o)) => {
                        o.api_version = Kind::$kind.api_version().to_string();
                        o.kind = Kind::$kind.as_str().to_string();
                    } )*
                    None => {}
                }
            }

            $(
                #[doc = concat!("The ", stringify!($kind), " inside, if that is the kind.")]
                pub fn $as(&self) -> Option<&$ty> {
                    match &self.kind { Some(Variant::$ty(o)) => Some(o), _ => None }
                }
                #[doc = concat!("The ", stringify!($kind), " inside, mutably.")]
                pub fn $as_mut(&mut self) -> Option<&mut $ty> {
                    match &mut self.kind { Some(Variant::$ty(o)) => Some(o), _ => None }
                }
                #[doc = concat!("Unwraps the ", stringify!($kind), ", if that is the kind.")]
                pub fn $into(self) -> Option<$ty> {
                    match self.kind { Some(Variant::$ty(o)) => Some(o), _ => None }
                }
            )*
        }

        $(
            impl From<$ty> for Object {
                fn from(o: $ty) -> Object {
                    Object { kind: Some(Variant::$ty(o)) }
                }
            }
        )*
    };
}

kinds! {
    Namespace, Namespace, as_namespace, as_namespace_mut, into_namespace;
    Node, Node, as_node, as_node_mut, into_node;
    Pod, Pod, as_pod, as_pod_mut, into_pod;
    DaemonSet, DaemonSet, as_daemon_set, as_daemon_set_mut, into_daemon_set;
    StatefulSet, StatefulSet, as_stateful_set, as_stateful_set_mut, into_stateful_set;
    Service, Service, as_service, as_service_mut, into_service;
    PersistentVolumeClaim, PersistentVolumeClaim, as_persistent_volume_claim, as_persistent_volume_claim_mut, into_persistent_volume_claim;
    ControllerRevision, ControllerRevision, as_controller_revision, as_controller_revision_mut, into_controller_revision;
    Event, Event, as_event, as_event_mut, into_event;
    BootstrapToken, BootstrapToken, as_bootstrap_token, as_bootstrap_token_mut, into_bootstrap_token;
}

impl Object {
    /// The kind of the object. Empty objects (never produced by the decoder or the
    /// store) report `Namespace`; call [`Object::kind_opt`] where that matters.
    pub fn kind(&self) -> Kind {
        self.kind_opt().unwrap_or(Kind::Namespace)
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.meta().name
    }

    /// The object's namespace ("" for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        &self.meta().namespace
    }

    /// The key the store files the object under.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind().as_str().to_string(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    /// The store revision of the last write (0 when never written).
    pub fn resource_version(&self) -> u64 {
        self.meta().resource_version.parse().unwrap_or(0)
    }

    /// "kind/namespace/name", for logs and spans.
    pub fn describe(&self) -> String {
        if self.namespace().is_empty() {
            format!("{}/{}", self.kind(), self.name())
        } else {
            format!("{}/{}/{}", self.kind(), self.namespace(), self.name())
        }
    }
}

impl ObjectMeta {
    /// True when this object is controlled by (or owned by) the object with `uid`.
    pub fn is_owned_by(&self, uid: &str) -> bool {
        self.owner_references.iter().any(|r| r.uid == uid)
    }

    /// The owner reference marked `controller: true`, if any.
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|r| r.controller == Some(true))
    }

    /// True when this object's controller reference (`controller: true`) names the
    /// object with `uid`: the object belongs to that controller, as kubectl counts it.
    pub fn is_controlled_by(&self, uid: &str) -> bool {
        self.owner_references
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_follow_the_variant() {
        let mut o = Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(o.kind(), Kind::Pod);
        assert_eq!(o.describe(), "Pod/default/p");
        o.set_type_meta();
        assert_eq!(o.as_pod().unwrap().api_version, "v1");
        o.meta_mut().resource_version = "42".into();
        assert_eq!(o.resource_version(), 42);
        assert!(o.as_node().is_none());
    }

    #[test]
    fn only_the_controller_reference_controls() {
        let reference = |uid: &str, controller| OwnerReference {
            uid: uid.into(),
            controller,
            ..Default::default()
        };
        let m = ObjectMeta {
            owner_references: vec![reference("a", Some(false)), reference("b", Some(true))],
            ..Default::default()
        };
        assert!(m.is_controlled_by("b"));
        assert!(!m.is_controlled_by("a"));
        assert!(m.is_owned_by("a"));
        let m = ObjectMeta {
            owner_references: vec![reference("c", None)],
            ..Default::default()
        };
        assert!(!m.is_controlled_by("c"));
    }
}
