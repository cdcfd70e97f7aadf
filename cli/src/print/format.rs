//! Small value formatters of `describe` and the commands, each matching the helper
//! kubectl uses for the same value; those table cells use too live in
//! [`twinset_proto::columns::format`] and are re-exported here.
use twinset_proto::v1::{Object, ObjectKey};

pub use twinset_proto::columns::format::{age, label_selector, labels, or_none, NONE};

/// A timestamp as kubectl's describe prints it (Go's RFC1123Z), in UTC.
pub fn rfc1123z(timestamp: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        Err(_) => or_none(timestamp),
    }
}

/// `kind.group/name` as kubectl prints it after apply, label, scale (`daemonset.apps/node-monitor`).
pub fn qualified_name(obj: &Object) -> String {
    format!("{}/{}", obj.kind().qualified(), obj.name())
}

/// The key of a named object of `kind` (the namespace is dropped for cluster-scoped kinds).
pub fn key(kind: twinset_proto::kinds::Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.as_str().to_string(),
        namespace: if kind.namespaced() {
            namespace.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123z_formats_like_go() {
        assert_eq!(
            rfc1123z("2024-03-05T07:08:09Z"),
            "Tue, 05 Mar 2024 07:08:09 +0000"
        );
        assert_eq!(rfc1123z(""), "<none>");
    }
}
