//! The OpenAPI documents kubectl reads before it writes (`kubectl apply`/`create` with
//! their default validation, `kubectl explain`), generated from the object model
//! (`twinset_proto::schema`), never written by hand:
//! - `/openapi/v3`: the index (each group version's path and a hash of its document);
//! - `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`: OpenAPI 3.0 documents with the
//!   definitions under upstream's names (`io.k8s.api.apps.v1.DaemonSet`), their
//!   `x-kubernetes-group-version-kind`, list and patch metadata, and a path per resource
//!   with the operations and query parameters this server serves. kubectl ≥ 1.29 checks
//!   a PATCH operation's `fieldValidation` parameter here to choose server-side field
//!   validation, and kubectl apply takes strategic-merge-patch metadata from it.
//! - `/openapi/v2`: Swagger 2.0, as gnostic protobuf when asked for
//!   `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (kubectl 1.27 and 1.28
//!   download it before any validation; every version validates client-side against it
//!   when the server does not take `fieldValidation`; kubectl 1.27's `explain` reads it),
//!   JSON otherwise.
//!
//! Each document is built once, on first use.

mod gnostic;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use twinset_proto::schema::{self, Field, Message, Shape, Type, QUANTITY_DEFINITION};
use twinset_proto::Kind;

use super::discovery::{KUBERNETES_VERSION, VERBS};
use super::path::GROUP_VERSIONS;
use super::status::ApiError;

/// The media type of gnostic's protobuf `openapi_v2.Document`, as kube-apiserver names it
/// in its answers (kubectl asks for `…spec.v2@v1.0+protobuf`, which Go cannot parse as a
/// Content-Type).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The patch bodies a PATCH operation would take (`application/strategic-merge-patch+json`
/// is what makes kubectl apply compute its patch from these documents).
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The query parameters of each verb, as the handlers read them: (verb, name, type,
/// description). A verb's parameters appear only where discovery lists the verb.
const QUERY_PARAMETERS: &[(&str, &str, &str, &str)] = &[
    ("list", "labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
    ("list", "fieldSelector", "string", "A selector to restrict the list of returned objects by their fields (metadata.name, metadata.namespace, and per kind those the API server supports)."),
    ("list", "resourceVersion", "string", "With watch: the revision to stream changes from (410 Gone when it is too old)."),
    ("watch", "watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ("create", "dryRun", "string", "All: validate and default the object without storing it."),
    ("create", "fieldManager", "string", "The name of the actor making the change (it owns the fields it set)."),
    ("create", "fieldValidation", "string", "Strict: a field the object's schema does not have is refused (400 BadRequest, strict decoding error). Unknown fields are always refused."),
    ("delete", "gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    ("delete", "propagationPolicy", "string", "Whether and how garbage collection is performed: Orphan, Background or Foreground."),
    ("patch", "dryRun", "string", "All: validate and default the patched object without storing it."),
    ("patch", "fieldManager", "string", "The name of the actor making the change."),
    ("patch", "fieldValidation", "string", "Strict: a field the object's schema does not have is refused (400 BadRequest, strict decoding error)."),
    ("patch", "force", "boolean", "Server-side apply: take the fields other managers own."),
    ("update", "dryRun", "string", "All: validate and default the object without storing it."),
    ("update", "fieldManager", "string", "The name of the actor making the change (it owns the fields it changed)."),
    ("update", "fieldValidation", "string", "Strict: a field the object's schema does not have is refused (400 BadRequest, strict decoding error)."),
];

/// Descriptions for the fields every kind has, where the proto says nothing.
const STANDARD_FIELDS: &[(&str, &str)] = &[
    (
        "apiVersion",
        "APIVersion defines the versioned schema of this representation of an object.",
    ),
    (
        "kind",
        "Kind is a string value representing the REST resource this object represents.",
    ),
    ("metadata", "Standard object's metadata."),
    ("spec", "The desired behavior of the object."),
    (
        "status",
        "The most recently observed status of the object. Read-only.",
    ),
];

const INT_OR_STRING_DEFINITION: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// Which OpenAPI the document is written in: the two differ in where definitions live,
/// how a field refers to one, and how parameters and bodies are described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    V2,
    V3,
}

impl Spec {
    fn reference(self, definition: &str) -> Value {
        match self {
            Spec::V2 => json!({ "$ref": format!("#/definitions/{definition}") }),
            Spec::V3 => json!({ "$ref": format!("#/components/schemas/{definition}") }),
        }
    }

    /// A schema that is the definition `definition`. In v3 the reference is wrapped in
    /// `allOf`, as upstream does, so that a description beside it counts.
    fn refer(self, definition: &str) -> Value {
        match self {
            Spec::V2 => self.reference(definition),
            Spec::V3 => json!({ "allOf": [self.reference(definition)] }),
        }
    }

    /// A parameter `name` of `location` ("query", "path") of the primitive `ty`.
    fn parameter(self, name: &str, location: &str, ty: &str, description: &str) -> Value {
        let mut p = json!({ "name": name, "in": location, "description": description, "uniqueItems": true });
        match self {
            Spec::V2 => p["type"] = json!(ty),
            Spec::V3 => p["schema"] = json!({ "type": ty }),
        }
        if location == "path" {
            p["required"] = json!(true);
        }
        p
    }
}

fn gvk(kind: Kind, kind_name: &str) -> Value {
    let version = kind.api_version().rsplit('/').next().unwrap_or_default();
    json!({ "group": kind.group(), "kind": kind_name, "version": version })
}

/// The schema of a value of type `t`.
fn type_schema(spec: Spec, t: &Type) -> Value {
    match t {
        Type::String => json!({ "type": "string" }),
        Type::Int32 => json!({ "type": "integer", "format": "int32" }),
        Type::Int64 => json!({ "type": "integer", "format": "int64" }),
        Type::Boolean => json!({ "type": "boolean" }),
        Type::Float => json!({ "type": "number", "format": "float" }),
        Type::Double => json!({ "type": "number", "format": "double" }),
        Type::Bytes => json!({ "type": "string", "format": "byte" }),
        Type::IntOrString => spec.refer(INT_OR_STRING_DEFINITION),
        Type::Quantity => spec.refer(QUANTITY_DEFINITION),
        Type::Object => json!({ "type": "object" }),
        Type::Message(name) => spec.refer(&definition_of(name)),
    }
}

fn definition_of(message: &str) -> String {
    schema::schema()
        .message(message)
        .map(Message::definition_name)
        .unwrap_or_else(|| message.to_string())
}

/// The schema of one field: its type, description, and list metadata.
fn field_schema(spec: Spec, field: &Field) -> Value {
    let mut s = match &field.shape {
        Shape::One(t) => type_schema(spec, t),
        Shape::List(t) => json!({ "type": "array", "items": type_schema(spec, t) }),
        Shape::Map(t) => json!({ "type": "object", "additionalProperties": type_schema(spec, t) }),
    };
    let description = if field.description.is_empty() {
        STANDARD_FIELDS
            .iter()
            .find(|(name, _)| *name == field.name)
            .map_or("", |(_, d)| *d)
    } else {
        &field.description
    };
    if !description.is_empty() {
        s["description"] = json!(description);
    }
    if let Some(rule) = field.list {
        s["x-kubernetes-list-type"] = json!(rule.list_type);
        if !rule.map_keys.is_empty() {
            s["x-kubernetes-list-map-keys"] = json!(rule.map_keys);
        }
        if let Some(strategy) = rule.patch_strategy {
            s["x-kubernetes-patch-strategy"] = json!(strategy);
        }
        if let Some(key) = rule.merge_key {
            s["x-kubernetes-patch-merge-key"] = json!(key);
        }
    }
    s
}

/// The definition of `message` (and its group-version-kind when it is a kind's root).
fn message_schema(spec: Spec, message: &Message) -> Value {
    let properties: Map<String, Value> = message
        .fields
        .iter()
        .map(|f| (f.name.clone(), field_schema(spec, f)))
        .collect();
    let mut s = json!({ "type": "object", "properties": properties });
    if !message.description.is_empty() {
        s["description"] = json!(message.description);
    }
    if let Some(kind) = Kind::from_kind_name(&message.name) {
        s["x-kubernetes-group-version-kind"] = json!([gvk(kind, kind.as_str())]);
    }
    s
}

fn list_kind(kind: Kind) -> String {
    format!("{}List", kind.as_str())
}

fn list_definition(kind: Kind) -> String {
    format!("{}List", schema::schema().root(kind).definition_name())
}

/// The list a collection GET answers with, generated from the kind.
fn list_schema(spec: Spec, kind: Kind) -> Value {
    json!({
        "type": "object",
        "description": format!("A list of {}.", kind.resource()),
        "properties": {
            "apiVersion": { "type": "string", "description": STANDARD_FIELDS[0].1 },
            "kind": { "type": "string", "description": STANDARD_FIELDS[1].1 },
            "items": { "type": "array", "items": spec.refer(&schema::schema().root(kind).definition_name()) },
            "metadata": {
                "type": "object",
                "description": "The list's metadata.",
                "properties": {
                    "resourceVersion": { "type": "string", "description": "The store revision the list was read at; watch from it." },
                    "continue": { "type": "string" },
                },
            },
        },
        "x-kubernetes-group-version-kind": [gvk(kind, &list_kind(kind))],
    })
}

/// Every definition the documents of `kinds` need, by name.
fn definitions(spec: Spec, kinds: &[Kind]) -> Map<String, Value> {
    let s = schema::schema();
    let mut out = Map::new();
    for name in s.reachable(kinds.iter().map(|k| k.as_str())) {
        let m = s.message(&name).expect("reachable names are messages");
        out.insert(m.definition_name(), message_schema(spec, m));
    }
    for &kind in kinds {
        out.insert(list_definition(kind), list_schema(spec, kind));
    }
    out.insert(
        INT_OR_STRING_DEFINITION.to_string(),
        json!({
            "type": "string",
            "format": "int-or-string",
            "x-kubernetes-int-or-string": true,
            "description": "An int32 or a string (\"25%\", \"http\"), written bare in JSON and YAML.",
        }),
    );
    out.insert(
        QUANTITY_DEFINITION.to_string(),
        json!({
            "type": "string",
            "description": "A fixed-point number with a suffix (\"100m\", \"128Mi\", \"1.5\"); a bare number is taken too.",
        }),
    );
    out
}

/// The operations of one path: (HTTP method, verb, x-kubernetes-action, operation id head).
type Operation = (&'static str, &'static str, &'static str, &'static str);

const COLLECTION_OPERATIONS: [Operation; 2] = [
    ("get", "list", "list", "list"),
    ("post", "create", "post", "create"),
];
const OBJECT_OPERATIONS: [Operation; 4] = [
    ("get", "get", "get", "read"),
    ("put", "update", "put", "replace"),
    ("patch", "patch", "patch", "patch"),
    ("delete", "delete", "delete", "delete"),
];

/// `listAppsV1NamespacedDaemonSet`, `readCoreV1Node`, `listCoreV1PodForAllNamespaces`.
fn operation_id(head: &str, kind: Kind, namespaced_path: bool, all_namespaces: bool) -> String {
    let group = match kind.group() {
        "" => "Core".to_string(),
        g => capitalised(g),
    };
    let version = kind.api_version().rsplit('/').next().unwrap_or_default();
    format!(
        "{head}{group}{}{}{}{}",
        capitalised(version),
        if namespaced_path { "Namespaced" } else { "" },
        kind.as_str(),
        if all_namespaces {
            "ForAllNamespaces"
        } else {
            ""
        },
    )
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|first| first.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn operation(spec: Spec, kind: Kind, op: Operation, namespaced_path: bool, all: bool) -> Value {
    let (method, verb, action, head) = op;
    let definition = schema::schema().root(kind).definition_name();
    let answer = if verb == "list" {
        list_definition(kind)
    } else {
        definition.clone()
    };
    let mut parameters: Vec<Value> = QUERY_PARAMETERS
        .iter()
        .filter(|(v, ..)| {
            *v == verb || (verb == "list" && *v == "watch" && VERBS.contains(&"watch"))
        })
        .map(|(_, name, ty, d)| spec.parameter(name, "query", ty, d))
        .collect();
    let body_types: &[&str] = match method {
        "post" | "put" => &["application/json", "application/yaml"],
        "patch" => &PATCH_TYPES,
        _ => &[],
    };
    let body_schema = if method == "patch" {
        json!({ "type": "object", "description": "The patch." })
    } else {
        spec.refer(&definition)
    };
    let code = if method == "post" { "201" } else { "200" };
    let mut o = json!({
        "operationId": operation_id(head, kind, namespaced_path, all),
        "description": format!("{verb} {}", if verb == "list" { kind.resource() } else { kind.as_str() }),
        "tags": [format!("{}{}", kind.group(), kind.api_version().rsplit('/').next().unwrap_or_default())],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind, kind.as_str()),
    });
    match spec {
        Spec::V2 => {
            if !body_types.is_empty() {
                parameters.insert(
                    0,
                    json!({ "name": "body", "in": "body", "required": true, "schema": body_schema }),
                );
                o["consumes"] = json!(body_types);
            }
            o["produces"] = json!(["application/json", "application/yaml"]);
            o["schemes"] = json!(["https"]);
            o["responses"] =
                json!({ code: { "description": "OK", "schema": spec.refer(&answer) } });
        }
        Spec::V3 => {
            if !body_types.is_empty() {
                let content: Map<String, Value> = body_types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": body_schema })))
                    .collect();
                o["requestBody"] = json!({ "content": content, "required": true });
            }
            o["responses"] = json!({ code: {
                "description": "OK",
                "content": { "application/json": { "schema": spec.refer(&answer) } },
            } });
        }
    }
    o["parameters"] = json!(parameters);
    o
}

/// The paths of `kind` (collection, object, and all namespaces for a namespaced kind),
/// with an operation for each verb discovery lists.
fn paths(spec: Spec, kind: Kind) -> Vec<(String, Value)> {
    let prefix = match kind.group() {
        "" => format!("/api/{}", kind.api_version()),
        _ => format!("/apis/{}", kind.api_version()),
    };
    let res = kind.resource();
    let namespace = spec.parameter("namespace", "path", "string", "The object's namespace.");
    let name = spec.parameter("name", "path", "string", "The object's name.");
    let mut out = Vec::new();
    let mut add =
        |path: String, ops: &[Operation], params: Vec<Value>, ns_path: bool, all: bool| {
            let mut item = Map::new();
            for &op in ops.iter().filter(|(_, verb, ..)| VERBS.contains(verb)) {
                item.insert(op.0.to_string(), operation(spec, kind, op, ns_path, all));
            }
            if item.is_empty() {
                return;
            }
            if !params.is_empty() {
                item.insert("parameters".into(), json!(params));
            }
            out.push((path, Value::Object(item)));
        };
    if kind.namespaced() {
        let coll = format!("{prefix}/namespaces/{{namespace}}/{res}");
        add(
            coll.clone(),
            &COLLECTION_OPERATIONS,
            vec![namespace.clone()],
            true,
            false,
        );
        add(
            format!("{coll}/{{name}}"),
            &OBJECT_OPERATIONS,
            vec![name, namespace],
            true,
            false,
        );
        add(
            format!("{prefix}/{res}"),
            &COLLECTION_OPERATIONS[..1],
            vec![],
            false,
            true,
        );
    } else {
        let coll = format!("{prefix}/{res}");
        add(coll.clone(), &COLLECTION_OPERATIONS, vec![], false, false);
        add(
            format!("{coll}/{{name}}"),
            &OBJECT_OPERATIONS,
            vec![name],
            false,
            false,
        );
    }
    out
}

fn info() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({ "title": "Twinset", "version": format!("v{major}.{minor}.0") })
}

/// The kinds of a group version (empty for one that has none).
fn kinds_of(group: &str, version: &str) -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group && k.api_version().rsplit('/').next() == Some(version))
        .collect()
}

/// The OpenAPI 3.0 document of the kinds `kinds`.
fn v3_document(kinds: &[Kind]) -> Value {
    let paths: Map<String, Value> = kinds.iter().flat_map(|&k| paths(Spec::V3, k)).collect();
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": { "schemas": definitions(Spec::V3, kinds) },
    })
}

/// The Swagger 2.0 document of every served kind.
fn v2_document() -> Value {
    let paths: Map<String, Value> = Kind::ALL.iter().flat_map(|&k| paths(Spec::V2, k)).collect();
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions(Spec::V2, &Kind::ALL),
    })
}

/// One served document, encoded once.
#[derive(Debug)]
struct Document {
    body: Vec<u8>,
    content_type: &'static str,
}

/// The v3 documents by their index path (`api/v1`, `apis/apps/v1`), with their hashes.
struct V3 {
    documents: BTreeMap<String, (Document, String)>,
    index: Document,
}

fn v3() -> &'static V3 {
    static V3: OnceLock<V3> = OnceLock::new();
    V3.get_or_init(|| {
        let mut documents = BTreeMap::new();
        for (group, version) in GROUP_VERSIONS {
            let kinds = kinds_of(group, version);
            if kinds.is_empty() {
                continue;
            }
            let path = match group {
                "" => format!("api/{version}"),
                g => format!("apis/{g}/{version}"),
            };
            let body = serde_json::to_vec(&v3_document(&kinds)).unwrap_or_default();
            let hash = hex(&Sha256::digest(&body));
            let doc = Document {
                body,
                content_type: "application/json",
            };
            documents.insert(path, (doc, hash));
        }
        let paths: Map<String, Value> = documents
            .iter()
            .map(|(path, (_, hash))| {
                (
                    path.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
                )
            })
            .collect();
        let index = Document {
            body: serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default(),
            content_type: "application/json",
        };
        V3 { documents, index }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v2` in JSON and in protobuf.
fn v2() -> &'static (Document, Document) {
    static V2: OnceLock<(Document, Document)> = OnceLock::new();
    V2.get_or_init(|| {
        let doc = v2_document();
        let json = Document {
            body: serde_json::to_vec(&doc).unwrap_or_default(),
            content_type: "application/json",
        };
        let protobuf = Document {
            body: gnostic::encode(&doc),
            content_type: V2_PROTOBUF,
        };
        (json, protobuf)
    })
}

/// The media subtypes (after `application/`) of gnostic's protobuf v2 document: kubectl
/// asks for the first, kube-apiserver answers with the second.
const V2_PROTOBUF_SUBTYPES: [&str; 2] = [
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// Whether one clause of an Accept header (`type/subtype;params`) takes `application/subtype`.
fn takes(clause: &str, subtype: &str) -> bool {
    let media = clause.split(';').next().unwrap_or_default().trim();
    let (t, s) = media.split_once('/').unwrap_or((media, ""));
    (t == "*" || t == "application") && (s == "*" || s == subtype)
}

/// The first of `offered` (subtypes of `application/`, with their document) that the
/// Accept header takes, in the header's order, as kube-openapi's handler chooses; an
/// empty header takes anything.
fn negotiate<'a>(accept: &str, offered: &[(&str, &'a Document)]) -> Option<&'a Document> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    accept.split(',').find_map(|clause| {
        offered
            .iter()
            .find(|(subtype, _)| takes(clause, subtype))
            .map(|(_, doc)| *doc)
    })
}

/// What `/openapi/…` answers.
#[derive(Debug)]
enum Answer {
    Document(&'static Document),
    /// The document moved: its hash is another (301 to the current URL, as upstream).
    Moved(String),
}

/// The document at `path` (`/openapi/v2`, `/openapi/v3`, `/openapi/v3/apis/apps/v1`), in
/// the form `accept` asks for; `hash` is the `?hash=` of a v3 document's URL.
fn document(path: &str, accept: &str, hash: Option<&str>) -> Result<Answer, ApiError> {
    let path = path.trim_end_matches('/');
    let not_acceptable = || {
        ApiError::new(
            406,
            "NotAcceptable",
            format!("{path} is served as application/json (and /openapi/v2 as {V2_PROTOBUF}), not as {accept}"),
        )
    };
    let doc = match path {
        "/openapi/v2" => {
            let (json, protobuf) = v2();
            let offered = [
                ("json", json),
                (V2_PROTOBUF_SUBTYPES[0], protobuf),
                (V2_PROTOBUF_SUBTYPES[1], protobuf),
            ];
            negotiate(accept, &offered).ok_or_else(not_acceptable)?
        }
        "/openapi/v3" => negotiate(accept, &[("json", &v3().index)]).ok_or_else(not_acceptable)?,
        _ => {
            let gv = path
                .strip_prefix("/openapi/v3/")
                .ok_or_else(|| ApiError::not_found_path(path))?;
            let (doc, current) = v3()
                .documents
                .get(gv)
                .ok_or_else(|| ApiError::not_found_path(path))?;
            if hash.is_some_and(|h| h != current) {
                return Ok(Answer::Moved(format!("/openapi/v3/{gv}?hash={current}")));
            }
            negotiate(accept, &[("json", doc)]).ok_or_else(not_acceptable)?
        }
    };
    Ok(Answer::Document(doc))
}

/// `GET /openapi/…`, for the callers the rest of the API admits.
pub async fn handle(req: Request) -> Response {
    if let Err(refused) = super::admit_request(&req) {
        return refused.into_response();
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{} is not allowed on {}", req.method(), req.uri().path()),
        )
        .into_response();
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let query = super::Query::parse(req.uri().query());
    match document(req.uri().path(), accept, query.get("hash")) {
        Ok(Answer::Document(doc)) => Response::builder()
            .header(http::header::CONTENT_TYPE, doc.content_type)
            .header(http::header::VARY, "Accept")
            .body(Body::from(doc.body.as_slice()))
            .unwrap_or_default(),
        Ok(Answer::Moved(to)) => Response::builder()
            .status(301)
            .header(http::header::LOCATION, to)
            .body(Body::empty())
            .unwrap_or_default(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
