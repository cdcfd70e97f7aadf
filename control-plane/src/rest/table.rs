//! `meta.k8s.io` Tables, what `kubectl get` asks for (`Accept: application/json;as=Table;
//! v=v1;g=meta.k8s.io`): the same columns `twinset get` prints (`twinset_proto::columns`),
//! each row with the object's metadata (kubectl's NAMESPACE column and `--show-labels`).

use serde_json::{json, Value};
use twinset_proto::columns;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// How a Table was asked for: its apiVersion and what each row carries of its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRequest {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub api_version: &'static str,
    /// `includeObject`: None, Metadata (the default) or Object.
    pub include: Include,
}

/// What a row carries of its object (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// Its metadata, as a PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// The Table the Accept header asks for, if any: the first `as=Table` media type with
/// group meta.k8s.io (kubectl lists v1 before v1beta1, then plain JSON as a fallback).
pub fn requested(accept: &str, include_object: Option<&str>) -> Option<TableRequest> {
    let api_version = accept.split(',').find_map(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if !has("as=Table") || !has("g=meta.k8s.io") {
            return None;
        }
        if has("v=v1") {
            Some("meta.k8s.io/v1")
        } else if has("v=v1beta1") {
            Some("meta.k8s.io/v1beta1")
        } else {
            None
        }
    })?;
    let include = match include_object {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    };
    Some(TableRequest {
        api_version,
        include,
    })
}

/// Appends one row: its cells and, as asked, the object's metadata or the object.
fn write_row(
    kind: Kind,
    cols: &[columns::Column],
    obj: &Object,
    req: TableRequest,
    out: &mut Vec<u8>,
) {
    let cells: Vec<Value> = cols
        .iter()
        .zip(columns::cells(kind, obj))
        .map(|(c, text)| c.json_cell(text))
        .collect();
    out.extend_from_slice(b"{\"cells\":");
    out.extend_from_slice(&serde_json::to_vec(&cells).unwrap_or_default());
    match req.include {
        Include::None => {}
        Include::Metadata => {
            // The metadata alone, not the whole object, and without the field ownership
            // (kubectl's columns never read it): most of a Table's cost otherwise.
            let mut meta = obj.meta().clone();
            meta.managed_fields.clear();
            out.extend_from_slice(
                b",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
            );
            if serde_json::to_writer(&mut *out, &meta).is_err() {
                out.extend_from_slice(b"null");
            }
            out.push(b'}');
        }
        Include::Object => {
            out.extend_from_slice(b",\"object\":");
            twinset_proto::manifest::write_json(obj, out);
        }
    }
    out.push(b'}');
}

/// The Table of `objects` of `kind`, read at `resource_version`, written straight to
/// bytes (a Table of a thousand pods is what `kubectl get pods -A` asks for).
pub fn write(kind: Kind, objects: &[Object], resource_version: &str, req: TableRequest) -> Vec<u8> {
    let cols = columns::columns(kind);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.r#type,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let head = json!({
        "kind": "Table",
        "apiVersion": req.api_version,
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": defs,
    });
    super::read::with_array(&head, "rows", objects, |obj, out| {
        write_row(kind, &cols, obj, req, out)
    })
}

/// [`write`] as a JSON value.
pub fn table(kind: Kind, objects: &[Object], resource_version: &str, req: TableRequest) -> Value {
    serde_json::from_slice(&write(kind, objects, resource_version, req)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{DaemonSet, ObjectMeta};

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectls_accept_header_asks_for_a_v1_table() {
        assert_eq!(
            requested(KUBECTL_GET, None),
            Some(TableRequest {
                api_version: "meta.k8s.io/v1",
                include: Include::Metadata
            })
        );
        assert_eq!(
            requested(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
                Some("Object")
            )
            .map(|r| (r.api_version, r.include)),
            Some(("meta.k8s.io/v1beta1", Include::Object))
        );
        assert_eq!(requested("application/json", None), None);
        assert_eq!(
            requested("application/json;as=Table;v=v1;g=other", None),
            None
        );
    }

    #[test]
    fn a_table_has_the_kinds_columns_and_a_row_per_object_with_its_metadata() {
        let ds = Object::from(DaemonSet {
            metadata: Some(ObjectMeta {
                name: "node-monitor".into(),
                namespace: "kube-system".into(),
                labels: [("app".to_string(), "node-monitor".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let req = requested(KUBECTL_GET, None).unwrap();
        let t = table(Kind::DaemonSet, std::slice::from_ref(&ds), "42", req);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        let defs = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(defs.len(), columns::columns(Kind::DaemonSet).len());
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        let row = &t["rows"][0];
        assert_eq!(row["cells"].as_array().unwrap().len(), defs.len());
        assert_eq!(row["cells"][0], "node-monitor");
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "kube-system");
        assert_eq!(row["object"]["metadata"]["labels"]["app"], "node-monitor");
        // Integer columns carry numbers.
        for (d, c) in defs.iter().zip(row["cells"].as_array().unwrap()) {
            if d["type"] == "integer" {
                assert!(c.is_number(), "{d} {c}");
            }
        }
    }
}
