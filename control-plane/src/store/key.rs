//! [`Key`]: where an object is filed (kind, namespace, name). One typed value the store,
//! the work queues and the controllers pass around, instead of "kind/ns/name" strings
//! that are split again.

use std::fmt;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// The store key of an object. Ordered by kind, then namespace, then name (the order
/// lists come back in). The namespace is "" for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The object's kind.
    pub kind: Kind,
    /// The namespace ("" for cluster-scoped kinds).
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl Key {
    /// The key of `kind` `namespace/name`.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key an object is filed under.
    pub fn of(o: &Object) -> Key {
        Key::new(o.kind(), o.namespace(), o.name())
    }
}

impl fmt::Display for Key {
    /// "Kind/namespace/name" ("Kind/name" when cluster-scoped), as `Object::describe` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_kind_namespace_name_and_prints_like_describe() {
        let a = Key::new(Kind::Pod, "a", "z");
        let b = Key::new(Kind::Pod, "b", "a");
        assert!(a < b);
        assert_eq!(a.to_string(), "Pod/a/z");
        assert_eq!(Key::new(Kind::Node, "", "n1").to_string(), "Node/n1");
    }
}
