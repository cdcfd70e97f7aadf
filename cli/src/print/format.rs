//! Small value formatters shared by tables and `describe`, each matching the
//! helper kubectl uses for the same value.
use std::collections::BTreeMap;
use twinset_proto::v1::{LabelSelector, Object, ObjectKey};

/// kubectl's placeholder for an empty value.
pub const NONE: &str = "<none>";

/// `value`, or `<none>` when it is empty (kubectl's stringOrNone).
pub fn or_none(value: &str) -> String {
    if value.is_empty() {
        NONE.to_string()
    } else {
        value.to_string()
    }
}

/// `k=v,k2=v2` in key order, `<none>` when empty (labels.FormatLabels).
pub fn labels(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return NONE.to_string();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label selector in kubectl's form (metav1.FormatLabelSelector):
/// `app=x,tier in (a,b),!legacy`; `<none>` for an empty selector.
pub fn label_selector(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return NONE.to_string();
    };
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for req in &sel.match_expressions {
        let values = req.values.join(",");
        let part = match req.operator.as_str() {
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!("{} {other} ({values})", req.key),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        NONE.to_string()
    } else {
        parts.join(",")
    }
}

/// kubectl's AGE for an RFC 3339 timestamp; `<unknown>` when it is missing.
pub fn age(timestamp: &str) -> String {
    if timestamp.is_empty() || twinset_proto::time::parse(timestamp).is_none() {
        return "<unknown>".to_string();
    }
    twinset_proto::time::age(timestamp)
}

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

/// Kubernetes access modes in kubectl's short form (`RWO`, `ROX`, `RWX`, `RWOP`), comma-joined.
pub fn access_modes(modes: &[String]) -> String {
    let short: Vec<&str> = modes
        .iter()
        .map(|m| match m.as_str() {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::LabelSelectorRequirement;

    #[test]
    fn labels_sorted_or_none() {
        let mut m = BTreeMap::new();
        assert_eq!(labels(&m), "<none>");
        m.insert("b".to_string(), "2".to_string());
        m.insert("a".to_string(), "1".to_string());
        assert_eq!(labels(&m), "a=1,b=2");
    }

    #[test]
    fn selector_with_expressions() {
        let mut sel = LabelSelector::default();
        assert_eq!(label_selector(Some(&sel)), "<none>");
        assert_eq!(label_selector(None), "<none>");
        sel.match_labels.insert("app".into(), "node-monitor".into());
        sel.match_expressions.push(LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: vec!["a".into(), "b".into()],
        });
        sel.match_expressions.push(LabelSelectorRequirement {
            key: "legacy".into(),
            operator: "DoesNotExist".into(),
            values: vec![],
        });
        assert_eq!(
            label_selector(Some(&sel)),
            "app=node-monitor,tier in (a,b),!legacy"
        );
    }

    #[test]
    fn rfc1123z_formats_like_go() {
        assert_eq!(
            rfc1123z("2024-03-05T07:08:09Z"),
            "Tue, 05 Mar 2024 07:08:09 +0000"
        );
        assert_eq!(rfc1123z(""), "<none>");
    }

    #[test]
    fn access_modes_short() {
        assert_eq!(
            access_modes(&["ReadWriteOnce".into(), "ReadOnlyMany".into()]),
            "RWO,ROX"
        );
    }

    #[test]
    fn age_unknown_when_missing() {
        assert_eq!(age(""), "<unknown>");
    }
}
