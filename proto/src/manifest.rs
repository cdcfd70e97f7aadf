//! Kubernetes manifests (YAML or JSON, one or many documents) to and from the
//! proto messages.
//!
//! Decoding goes text → generic value → typed message, with the path of every
//! field tracked, so an error names exactly where it is
//! (`spec.template.spec.containers[0].imag: unknown field`). Every decoded
//! object is validated before it is returned.

use crate::v1::{self, Object};
use crate::{validate, Kind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

mod strict;

/// Why a manifest was refused. The message is one line and names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ManifestError {
    /// The 1-based document the problem is in (0 when it concerns the whole input).
    pub document: usize,
    /// What is wrong, naming the field path where there is one.
    pub message: String,
}

/// How an unknown field's error ends (`spec.foo: unknown field`).
const UNKNOWN_FIELD: &str = ": unknown field";

impl ManifestError {
    /// The path of the unknown field this error is about (`spec.foo`), if it is one.
    pub fn unknown_field(&self) -> Option<&str> {
        let head = self.message.strip_suffix(UNKNOWN_FIELD)?;
        head.rsplit(": ").next()
    }

    /// The error in kube-apiserver's words for a request body of `kind` it cannot
    /// decode (`DaemonSet in version "v1" cannot be handled as a DaemonSet: strict
    /// decoding error: unknown field "spec.foo"`), so kubectl prints its usual line.
    pub fn server_message(&self, kind: Kind) -> String {
        let version = kind.api_version().rsplit('/').next().unwrap_or_default();
        let detail = match self.unknown_field() {
            Some(field) => format!("strict decoding error: unknown field {field:?}"),
            None => self.message.clone(),
        };
        format!("{kind} in version {version:?} cannot be handled as a {kind}: {detail}")
    }
}

fn err(document: usize, message: impl Into<String>) -> ManifestError {
    ManifestError {
        document,
        message: message.into(),
    }
}

/// Decodes every object in a YAML or JSON text (documents separated by `---`, or a
/// `kind: List`), checks apiVersion and kind, and validates each object.
pub fn decode(text: &str) -> Result<Vec<Object>, ManifestError> {
    decode_with(text, true)
}

/// As [`decode`], without [`validate`]: the objects as a client that leaves validation
/// to the server would send them (shape, apiVersion and kind are still checked).
pub fn decode_unvalidated(text: &str) -> Result<Vec<Object>, ManifestError> {
    decode_with(text, false)
}

fn decode_with(text: &str, validated: bool) -> Result<Vec<Object>, ManifestError> {
    let docs = parse_documents(text)?;
    let multi = docs.len() > 1;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        let prefix = |m: String| {
            if multi {
                err(n, format!("document {n}: {m}"))
            } else {
                err(n, m)
            }
        };
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match doc.get("items") {
                Some(Value::Array(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(prefix("items: must be a list".into())),
            };
            for (j, item) in items.into_iter().enumerate() {
                let obj = decode_value(item, validated)
                    .map_err(|m| prefix(format!("items[{j}]: {m}")))?;
                out.push(obj);
            }
        } else {
            out.push(decode_value(doc, validated).map_err(prefix)?);
        }
    }
    if out.is_empty() {
        return Err(err(0, "no objects passed to apply"));
    }
    Ok(out)
}

/// Decodes one object from its JSON shape (a patched object, a server-side apply's
/// result), checking apiVersion, kind and shape but not validating it.
pub fn decode_json(doc: Value) -> Result<Object, ManifestError> {
    decode_value(doc, false).map_err(|m| err(1, m))
}

/// The one document of a YAML or JSON text, as a generic value (a server-side apply's
/// configuration, which need not be a whole object).
pub fn parse_one(text: &str) -> Result<Value, ManifestError> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(err(
            0,
            format!("{n} documents given; one object is expected"),
        )),
    }
}

/// The text of a manifest given as bytes (a file, a request body): manifests are UTF-8,
/// and the error names the offset of the first byte that is not.
pub fn text_of(bytes: &[u8]) -> Result<&str, ManifestError> {
    std::str::from_utf8(bytes).map_err(|e| {
        err(
            0,
            format!(
                "invalid UTF-8 at byte offset {}: a manifest is UTF-8 JSON or YAML",
                e.valid_up_to()
            ),
        )
    })
}

/// JSON read with duplicate keys refused (a patch body; manifests are read by [`decode`]).
pub fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<strict::Strict>(text).map(|s| s.0)
}

/// How deep a YAML document may nest (mappings and sequences). Kubernetes objects nest
/// about 15 deep; the bound keeps a hostile document from costing stack or time.
pub const MAX_YAML_DEPTH: usize = 64;

/// How many events YAML aliases may replay in all. Kubernetes manifests rarely use
/// aliases; an alias bomb ("billion laughs") replays millions, and is refused as soon
/// as it passes this bound, before anything more is expanded.
pub const MAX_ALIAS_REPLAY: usize = 10_000;

/// The YAML parser's options: duplicate keys refused, nesting and alias expansion bounded.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_YAML_DEPTH,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY;
    options
}

/// A YAML error in one line, without the parser's source snippet or its advice to
/// programmers.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    let plain = e.without_snippet();
    let at = e
        .location()
        .map(|l| format!("line {} column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    let what = match plain {
        serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
        other => {
            let text = one_line(&other.to_string());
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let text = strip_location(text);
            // The location is said once, in front; the advice is for programmers.
            let text = text.split(" at line ").next().unwrap_or(text);
            let text = text
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(text);
            if text.starts_with("alias replay limit exceeded") {
                format!("aliases expand to more than {MAX_ALIAS_REPLAY} nodes")
            } else if text.starts_with("recursion limit exceeded") {
                "nested too deeply (recursion limit exceeded)".to_string()
            } else {
                text.to_string()
            }
        }
    };
    format!("invalid YAML: {at}{what}")
}

/// `line L column C: rest` → `rest` (the location is said once, in front).
fn strip_location(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("line ") else {
        return text;
    };
    match rest.split_once(": ") {
        Some((pos, tail)) if pos.contains(" column ") => tail,
        _ => text,
    }
}

/// What a breached parser budget means for a manifest.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { .. } => format!("nested deeper than {MAX_YAML_DEPTH} levels"),
        B::Nodes { nodes } => format!("more than {} nodes", nodes.saturating_sub(1)),
        B::Aliases { aliases } => format!("more than {} aliases", aliases.saturating_sub(1)),
        B::Anchors { anchors } => format!("more than {} anchors", anchors.saturating_sub(1)),
        B::Documents { documents } => {
            format!("more than {} documents", documents.saturating_sub(1))
        }
        B::Events { events } => format!("more than {} YAML events", events.saturating_sub(1)),
        other => format!("over a parser bound: {other:?}"),
    }
}

/// Splits the text into non-empty documents.
fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v = strict_json(text).map_err(|e| err(0, format!("invalid JSON: {e}")))?;
        match v {
            Value::Array(items) => items,
            v => vec![v],
        }
    } else {
        serde_saphyr::from_multiple_with_options::<Value>(text, yaml_options())
            .map_err(|e| err(0, yaml_error(&e)))?
    };
    Ok(values.into_iter().filter(|v| !v.is_null()).collect())
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes one document that is already a generic value.
fn decode_value(doc: Value, validated: bool) -> Result<Object, String> {
    let map = doc
        .as_object()
        .ok_or("a manifest must be a mapping of fields (apiVersion, kind, metadata, ...)")?;
    let kind_name = match map.get("kind") {
        None | Some(Value::Null) => {
            return Err("kind is missing: every object needs apiVersion and kind".into())
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err("kind is missing: every object needs apiVersion and kind".into())
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("kind: must be a string".into()),
    };
    let api_version = match map.get("apiVersion") {
        None | Some(Value::Null) => {
            return Err(format!("apiVersion is missing for kind {kind_name:?}"))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("apiVersion: must be a string".into()),
    };
    let kind = Kind::from_kind_name(&kind_name).ok_or_else(|| {
        format!(
            "no matches for kind {kind_name:?} in version {api_version:?}: Twinset serves {}",
            served()
        )
    })?;
    if kind.api_version() != api_version {
        return Err(format!(
            "no matches for kind {kind_name:?} in version {api_version:?} (use apiVersion: {})",
            kind.api_version()
        ));
    }
    no_sequence_for_a_message(&doc, crate::schema::schema().root(kind), "")?;
    let mut obj = match kind {
        Kind::Namespace => typed::<v1::Namespace>(doc)?,
        Kind::Node => typed::<v1::Node>(doc)?,
        Kind::Pod => typed::<v1::Pod>(doc)?,
        Kind::DaemonSet => typed::<v1::DaemonSet>(doc)?,
        Kind::StatefulSet => typed::<v1::StatefulSet>(doc)?,
        Kind::Service => typed::<v1::Service>(doc)?,
        Kind::PersistentVolumeClaim => typed::<v1::PersistentVolumeClaim>(doc)?,
        Kind::ControllerRevision => typed::<v1::ControllerRevision>(doc)?,
        Kind::Event => typed::<v1::Event>(doc)?,
        // from_kind_name never names an internal kind; said again here for the match.
        Kind::BootstrapToken => {
            return Err(format!(
                "no matches for kind {kind_name:?}: Twinset serves {}",
                served()
            ))
        }
    };
    obj.set_type_meta();
    if validated {
        validate::validate(&obj).map_err(|e| e.to_string())?;
    }
    Ok(obj)
}

/// Refuses a sequence where the schema has an object message: serde's derived structs
/// read a sequence as their fields in order, which would turn `metadata: [..]` into an
/// error about the wrong field (`metadata[0]: ... expected a string`).
fn no_sequence_for_a_message(
    value: &Value,
    message: &crate::schema::Message,
    path: &str,
) -> Result<(), String> {
    use crate::schema::{schema, Shape, Type};
    let Value::Object(fields) = value else {
        return Ok(());
    };
    for (name, v) in fields {
        let Some(field) = message.field(name) else {
            continue;
        };
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let (Shape::One(Type::Message(m))
        | Shape::List(Type::Message(m))
        | Shape::Map(Type::Message(m))) = &field.shape
        else {
            continue;
        };
        let Some(inner) = schema().message(m) else {
            continue;
        };
        match (&field.shape, v) {
            (Shape::One(_), Value::Array(_)) => {
                return Err(format!(
                    "{here}: invalid type: sequence, expected struct {m}"
                ))
            }
            (Shape::One(_), _) => no_sequence_for_a_message(v, inner, &here)?,
            (Shape::List(_), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_array() {
                        return Err(format!(
                            "{here}[{i}]: invalid type: sequence, expected struct {m}"
                        ));
                    }
                    no_sequence_for_a_message(item, inner, &format!("{here}[{i}]"))?;
                }
            }
            (Shape::Map(_), Value::Object(entries)) => {
                for (key, item) in entries {
                    if item.is_array() {
                        return Err(format!(
                            "{here}.{key}: invalid type: sequence, expected struct {m}"
                        ));
                    }
                    no_sequence_for_a_message(item, inner, &format!("{here}.{key}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn served() -> String {
    Kind::ALL
        .iter()
        .map(|k| format!("{} ({})", k.as_str(), k.api_version()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn typed<T: DeserializeOwned + Into<Object>>(doc: Value) -> Result<Object, String> {
    match serde_path_to_error::deserialize::<_, T>(doc) {
        Ok(t) => Ok(t.into()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if let Some(rest) = inner.strip_prefix("unknown field `") {
                let field = rest.split('`').next().unwrap_or_default();
                let full = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                // serde_path_to_error already appends the unknown key on some paths.
                let full = if path.ends_with(&format!(".{field}")) || path == field {
                    path
                } else {
                    full
                };
                return Err(format!("{full}{UNKNOWN_FIELD}"));
            }
            Err(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        }
    }
}

/// The object in the Kubernetes JSON shape (camelCase, empty fields left out, keys sorted).
pub fn to_value(obj: &Object) -> Value {
    fn v<T: Serialize>(t: &T) -> Value {
        serde_json::to_value(t).unwrap_or(Value::Null)
    }
    let mut obj = obj.clone();
    obj.set_type_meta();
    match &obj.kind {
        Some(v1::object::Kind::Namespace(o)) => v(o),
        Some(v1::object::Kind::Node(o)) => v(o),
        Some(v1::object::Kind::Pod(o)) => v(o),
        Some(v1::object::Kind::DaemonSet(o)) => v(o),
        Some(v1::object::Kind::StatefulSet(o)) => v(o),
        Some(v1::object::Kind::Service(o)) => v(o),
        Some(v1::object::Kind::PersistentVolumeClaim(o)) => v(o),
        Some(v1::object::Kind::ControllerRevision(o)) => v(o),
        Some(v1::object::Kind::Event(o)) => v(o),
        Some(v1::object::Kind::BootstrapToken(o)) => v(o),
        None => Value::Null,
    }
}

/// Appends the object's JSON (the shape of [`to_value`]) to `out`, written straight from
/// the message without an intermediate value tree (lists of many objects).
pub fn write_json(obj: &Object, out: &mut Vec<u8>) {
    fn w<T: Serialize>(t: &T, out: &mut Vec<u8>) {
        if serde_json::to_writer(&mut *out, t).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    let mut obj = obj.clone();
    obj.set_type_meta();
    match &obj.kind {
        Some(v1::object::Kind::Namespace(o)) => w(o, out),
        Some(v1::object::Kind::Node(o)) => w(o, out),
        Some(v1::object::Kind::Pod(o)) => w(o, out),
        Some(v1::object::Kind::DaemonSet(o)) => w(o, out),
        Some(v1::object::Kind::StatefulSet(o)) => w(o, out),
        Some(v1::object::Kind::Service(o)) => w(o, out),
        Some(v1::object::Kind::PersistentVolumeClaim(o)) => w(o, out),
        Some(v1::object::Kind::ControllerRevision(o)) => w(o, out),
        Some(v1::object::Kind::Event(o)) => w(o, out),
        Some(v1::object::Kind::BootstrapToken(o)) => w(o, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn list_value(objs: &[Object]) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "items": objs.iter().map(to_value).collect::<Vec<_>>(),
        "kind": "List",
        "metadata": { "resourceVersion": "" },
    })
}

fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

fn json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// One object as YAML, as `get -o yaml` prints it; it decodes back to the same object.
pub fn to_yaml(obj: &Object) -> String {
    yaml(&to_value(obj))
}

/// One object as pretty JSON.
pub fn to_json(obj: &Object) -> String {
    json(&to_value(obj))
}

/// Several objects as a `kind: List` in YAML.
pub fn list_to_yaml(objs: &[Object]) -> String {
    yaml(&list_value(objs))
}

/// Several objects as a `kind: List` in JSON.
pub fn list_to_json(objs: &[Object]) -> String {
    json(&list_value(objs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE_DS: &str = include_str!("../../deploy/examples/daemonset.yaml");

    const GUIDE_STS: &str = include_str!("../../deploy/examples/statefulset.yaml");

    fn one(text: &str) -> Object {
        let mut v = decode(text).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    fn fail(text: &str) -> String {
        decode(text).unwrap_err().to_string()
    }

    #[test]
    fn decodes_the_guides_manifests() {
        let ds = one(GUIDE_DS);
        let d = ds.as_daemon_set().unwrap();
        assert_eq!(ds.namespace(), "kube-system");
        let c = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.image, "datadog/agent:latest");
        assert_eq!(c.resources.as_ref().unwrap().limits["memory"], "128Mi");
        let sts = one(GUIDE_STS);
        let s = sts.as_stateful_set().unwrap().spec.as_ref().unwrap();
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.service_name, "mysql");
        assert_eq!(
            s.volume_claim_templates[0].metadata.as_ref().unwrap().name,
            "mysql-storage"
        );
    }

    #[test]
    fn yaml_round_trips() {
        for text in [GUIDE_DS, GUIDE_STS] {
            let obj = one(text);
            let again = one(&to_yaml(&obj));
            assert_eq!(obj, again);
            let again = one(&to_json(&obj));
            assert_eq!(obj, again);
        }
    }

    #[test]
    fn fields_kubernetes_requires_are_written_at_their_default() {
        let pod = one(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: sleep\nstatus:\n  containerStatuses:\n  - name: c\n    image: sleep\n",
        );
        let v = to_value(&pod);
        let status = &v["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{v}");
        assert_eq!(status["ready"], false, "{v}");
        assert_eq!(status["imageID"], "", "{v}");
        // Others at their default stay out, and the object reads back the same.
        assert!(status.get("containerID").is_none(), "{v}");
        assert_eq!(one(&to_json(&pod)), pod);
        let mut sts = one(GUIDE_STS);
        if let Some(v1::object::Kind::StatefulSet(s)) = &mut sts.kind {
            s.status = Some(v1::StatefulSetStatus::default());
        }
        let v = to_value(&sts);
        assert_eq!(v["status"], serde_json::json!({ "replicas": 0 }));
    }

    #[test]
    fn multi_document_and_lists() {
        let two = format!("{GUIDE_DS}---\n{GUIDE_STS}");
        assert_eq!(decode(&two).unwrap().len(), 2);
        let list = list_to_yaml(&[one(GUIDE_DS), one(GUIDE_STS)]);
        assert_eq!(decode(&list).unwrap().len(), 2);
        assert_eq!(decode(&format!("---\n{GUIDE_DS}---\n")).unwrap().len(), 1);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let bad = GUIDE_DS.replace("image: datadog", "imag: datadog");
        assert_eq!(
            fail(&bad),
            "spec.template.spec.containers[0].imag: unknown field"
        );
        let bad = GUIDE_DS.replace("  namespace: kube-system", "  namespac: kube-system");
        assert_eq!(fail(&bad), "metadata.namespac: unknown field");
        let e = decode(&bad).unwrap_err();
        assert_eq!(e.unknown_field(), Some("metadata.namespac"));
        assert_eq!(
            e.server_message(Kind::DaemonSet),
            "DaemonSet in version \"v1\" cannot be handled as a DaemonSet: strict decoding error: unknown field \"metadata.namespac\""
        );
        let two = decode(&format!("{GUIDE_DS}---\n{bad}")).unwrap_err();
        assert_eq!(two.unknown_field(), Some("metadata.namespac"));
        let other = decode(&GUIDE_DS.replace("apps/v1", "apps/v2")).unwrap_err();
        assert_eq!(other.unknown_field(), None);
        assert!(other.server_message(Kind::DaemonSet).starts_with(
            "DaemonSet in version \"v1\" cannot be handled as a DaemonSet: no matches"
        ));
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(fail("").contains("no objects"));
        assert!(fail("# only a comment\n").contains("no objects"));
        assert!(fail("a: [1, 2\n").starts_with("invalid YAML"));
        assert!(fail("apiVersion: v1\nmetadata:\n  name: x\n").contains("kind is missing"));
        assert!(fail(&GUIDE_DS.replace("DaemonSet", "Deployment"))
            .contains("no matches for kind \"Deployment\""));
        // Internal kinds cannot be named in a manifest.
        let token = "apiVersion: bootstrap.twinset.io/v1\nkind: BootstrapToken\nmetadata:\n  name: abcdef\n";
        assert!(fail(token).contains("no matches for kind \"BootstrapToken\""));
        assert!(fail(&GUIDE_DS.replace("apps/v1", "apps/v2")).contains("in version \"apps/v2\""));
        let q = fail(&GUIDE_DS.replace("\"128Mi\"", "\"12x\""));
        assert!(
            q.contains("spec.template.spec.containers[0].resources.limits") && q.contains("12x"),
            "{q}"
        );
        let r = fail(&GUIDE_STS.replace("replicas: 3", "replicas: three"));
        assert!(r.starts_with("spec.replicas:"), "{r}");
        let r = fail(&GUIDE_STS.replace("replicas: 3", "replicas: 2.5"));
        assert!(r.starts_with("spec.replicas:"), "{r}");
    }

    #[test]
    fn numbers_are_quantities_too() {
        let obj = one(&GUIDE_DS.replace("cpu: \"100m\"", "cpu: 1"));
        let d = obj.as_daemon_set().unwrap();
        let c = &d
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.resources.as_ref().unwrap().limits["cpu"], "1");
    }

    #[test]
    fn hostile_text_is_refused_early_and_clearly() {
        let mut bomb = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lol\n  annotations:\n    a0: &a0 lol\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            bomb.push_str(&format!("    a{i}: &a{i} [{refs}]\n"));
        }
        assert_eq!(
            fail(&bomb),
            "invalid YAML: line 10 column 42: aliases expand to more than 10000 nodes"
        );
        let mut deep = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  labels:\n");
        for i in 0..100 {
            deep.push_str(&format!("{}a:\n", "  ".repeat(i + 2)));
        }
        assert_eq!(
            fail(&deep),
            "invalid YAML: line 67 column 129: nested deeper than 64 levels"
        );
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n";
        assert_eq!(
            fail(ns),
            "invalid YAML: line 5 column 3: duplicate mapping key: name"
        );
        let json = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","name":"b"}}"#;
        assert_eq!(
            fail(json),
            "invalid JSON: duplicate field \"name\" at line 1 column 67"
        );
        let patch = strict_json(r#"{"spec":{"replicas":1,"replicas":2}}"#).unwrap_err();
        assert_eq!(
            patch.to_string(),
            "duplicate field \"replicas\" at line 1 column 32"
        );
        // serde reads a struct from a sequence of its fields; a manifest may not.
        let listed = "apiVersion: v1\nkind: Namespace\nmetadata:\n- name: a\n";
        assert_eq!(
            fail(listed),
            "metadata: invalid type: sequence, expected struct ObjectMeta"
        );
        let port = GUIDE_DS.replace(
            "        image: datadog/agent:latest\n",
            "        image: datadog/agent:latest\n        ports:\n        - [80]\n",
        );
        assert_eq!(
            fail(&port),
            "spec.template.spec.containers[0].ports[0]: invalid type: sequence, expected struct ContainerPort"
        );
        assert_eq!(
            text_of(b"ab\xffc").unwrap_err().message,
            "invalid UTF-8 at byte offset 2: a manifest is UTF-8 JSON or YAML"
        );
    }
}
