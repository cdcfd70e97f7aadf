//! Small value formatters that table cells share, each matching the helper
//! kubectl uses for the same value.
use crate::v1::LabelSelector;
use std::collections::BTreeMap;

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

/// kubectl's AGE of a timestamp (now, or at a given time for tests).
pub use crate::time::{age, age_at};

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
    use crate::v1::LabelSelectorRequirement;
    use std::time::Duration;

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
    fn access_modes_short() {
        assert_eq!(
            access_modes(&["ReadWriteOnce".into(), "ReadOnlyMany".into()]),
            "RWO,ROX"
        );
    }

    #[test]
    fn age_unknown_when_missing_else_since_now() {
        assert_eq!(age(""), "<unknown>");
        let created = crate::time::parse("2024-03-05T07:08:09Z").unwrap();
        let now = created + Duration::from_secs(200);
        assert_eq!(age_at("2024-03-05T07:08:09Z", now), "3m20s");
        assert_eq!(age_at("", now), "<unknown>");
    }
}
