//! Field selectors (`ListRequest.field_selector`, `get --field-selector`): the fields
//! each kind can be selected by, as the Kubernetes API server offers them, and matching.
//! Every kind has `metadata.name` and `metadata.namespace`; pods add `spec.nodeName`;
//! events add their involved object, reason, source and type (what `describe` asks for).

use crate::v1::Object;
use crate::Kind;

/// Fields every kind can be selected by.
const COMMON: &[&str] = &["metadata.name", "metadata.namespace"];
/// Pods' own selectable fields.
const POD: &[&str] = &["spec.nodeName"];
/// Events' own selectable fields (Kubernetes' event ToSelectableFields).
const EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// A field selector that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term is not `FIELD=VALUE`, `FIELD==VALUE` or `FIELD!=VALUE`.
    #[error("invalid field selector {0:?}: expected FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE")]
    Syntax(String),
    /// The kind cannot be selected by this field (Kubernetes' message, then what can).
    #[error("field label not supported: {field} (supported for {resource}: {supported})")]
    Unsupported {
        /// The field asked for.
        field: String,
        /// The resource listed, e.g. `events`.
        resource: &'static str,
        /// The fields it can be selected by, comma-separated.
        supported: String,
    },
}

/// The fields objects of `kind` can be selected by.
pub fn supported(kind: Kind) -> Vec<&'static str> {
    let own: &[&str] = match kind {
        Kind::Pod => POD,
        Kind::Event => EVENT,
        _ => &[],
    };
    COMMON.iter().chain(own).copied().collect()
}

/// One `FIELD=VALUE` or `FIELD!=VALUE` term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector for one kind; all its terms must hold. The empty selector
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Parses `s` (comma-separated terms) for objects of `kind`, refusing fields the
    /// kind cannot be selected by.
    pub fn parse(kind: Kind, s: &str) -> Result<FieldSelector, Error> {
        let allowed = supported(kind);
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(Error::Syntax(part.to_string()));
            };
            let field = field.trim();
            if !allowed.contains(&field) {
                return Err(Error::Unsupported {
                    field: field.to_string(),
                    resource: kind.resource(),
                    supported: allowed.join(", "),
                });
            }
            terms.push(Term {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Whether `o` has every selected field value.
    pub fn matches(&self, o: &Object) -> bool {
        self.terms
            .iter()
            .all(|t| (field_value(o, &t.field) == t.value) == t.equal)
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// The value of a selectable field of `o` ("" where the object has none).
fn field_value<'a>(o: &'a Object, field: &str) -> &'a str {
    match field {
        "metadata.name" => return o.name(),
        "metadata.namespace" => return o.namespace(),
        "spec.nodeName" => {
            return o
                .as_pod()
                .and_then(|p| p.spec.as_ref())
                .map_or("", |s| s.node_name.as_str())
        }
        _ => {}
    }
    let Some(e) = o.as_event() else {
        return "";
    };
    let r = e.involved_object.as_ref();
    let of_ref = |f: fn(&crate::v1::ObjectReference) -> &String| r.map_or("", |r| f(r).as_str());
    match field {
        "involvedObject.kind" => of_ref(|r| &r.kind),
        "involvedObject.namespace" => of_ref(|r| &r.namespace),
        "involvedObject.name" => of_ref(|r| &r.name),
        "involvedObject.uid" => of_ref(|r| &r.uid),
        "involvedObject.apiVersion" => of_ref(|r| &r.api_version),
        "involvedObject.resourceVersion" => of_ref(|r| &r.resource_version),
        "involvedObject.fieldPath" => of_ref(|r| &r.field_path),
        "reason" => &e.reason,
        "reportingComponent" => &e.reporting_component,
        // Kubernetes: the source's component, else the reporting component.
        "source" => match e.source.as_ref().map(|s| s.component.as_str()) {
            Some(c) if !c.is_empty() => c,
            _ => &e.reporting_component,
        },
        "type" => &e.r#type,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Event, EventSource, ObjectMeta, ObjectReference, Pod, PodSpec};

    fn pod() -> Object {
        Object::from(Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "ns".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: "n1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn event() -> Object {
        Object::from(Event {
            metadata: Some(ObjectMeta {
                name: "web-0.abc".into(),
                namespace: "ns".into(),
                ..Default::default()
            }),
            involved_object: Some(ObjectReference {
                kind: "Pod".into(),
                namespace: "ns".into(),
                name: "web-0".into(),
                uid: "u1".into(),
                api_version: "v1".into(),
                field_path: "spec.containers{c}".into(),
                ..Default::default()
            }),
            reason: "BackOff".into(),
            r#type: "Warning".into(),
            source: Some(EventSource {
                component: "kubelet".into(),
                host: "n1".into(),
            }),
            reporting_component: "twinset-agent".into(),
            ..Default::default()
        })
    }

    fn sel(kind: Kind, s: &str) -> FieldSelector {
        FieldSelector::parse(kind, s).unwrap()
    }

    #[test]
    fn pods_by_node_and_name() {
        let p = pod();
        assert!(sel(Kind::Pod, "spec.nodeName=n1").matches(&p));
        assert!(sel(Kind::Pod, "spec.nodeName==n1,metadata.name=p").matches(&p));
        assert!(sel(Kind::Pod, "spec.nodeName!=n2, metadata.namespace=ns").matches(&p));
        assert!(!sel(Kind::Pod, "spec.nodeName=n2").matches(&p));
        assert!(!sel(Kind::Pod, "metadata.name!=p").matches(&p));
        assert!(sel(Kind::Pod, "").matches(&p) && sel(Kind::Pod, "").is_empty());
    }

    #[test]
    fn events_by_involved_object_as_kubectl_describe_asks() {
        let e = event();
        let describe = "involvedObject.name=web-0,involvedObject.namespace=ns,involvedObject.kind=Pod,involvedObject.uid=u1";
        assert!(sel(Kind::Event, describe).matches(&e));
        assert!(!sel(Kind::Event, &describe.replace("u1", "u2")).matches(&e));
        assert!(!sel(Kind::Event, "involvedObject.kind=StatefulSet").matches(&e));
        assert!(sel(
            Kind::Event,
            "reason=BackOff,type=Warning,source=kubelet,reportingComponent=twinset-agent"
        )
        .matches(&e));
        assert!(sel(
            Kind::Event,
            "involvedObject.fieldPath=spec.containers{c},involvedObject.apiVersion=v1"
        )
        .matches(&e));
        // Cluster-scoped objects' events have an empty involved namespace.
        assert!(!sel(Kind::Event, "involvedObject.namespace=").matches(&e));
    }

    #[test]
    fn unknown_fields_and_bad_terms_are_refused() {
        let e = FieldSelector::parse(Kind::Pod, "status.phase=Running").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field label not supported: status.phase (supported for pods: metadata.name, metadata.namespace, spec.nodeName)"
        );
        // Fields belong to their kind, as in Kubernetes.
        let e = FieldSelector::parse(Kind::DaemonSet, "spec.nodeName=n1").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("field label not supported: spec.nodeName"),
            "{e}"
        );
        assert!(FieldSelector::parse(Kind::Pod, "involvedObject.name=x").is_err());
        assert_eq!(
            FieldSelector::parse(Kind::Pod, "spec.nodeName"),
            Err(Error::Syntax("spec.nodeName".into()))
        );
    }
}
