//! The JSON shape of every object message, read once from the compiled descriptors
//! ([`crate::FILE_DESCRIPTOR_SET`]): each message's fields by their JSON names, with their
//! types, their proto comments as descriptions, and how a strategic merge patch treats
//! each list (the one table [`LIST_RULES`], as upstream k8s.io/api declares it). The
//! OpenAPI documents are generated from it, and the patch code asks it for merge keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type as ProtoType};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::json_names::{QUANTITY_MAPS, RENAMES};
use crate::Kind;

/// How a strategic merge patch (and server-side apply) treats a list field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the whole list.
    Replace,
    /// Elements are matched by this field of theirs and merged one by one.
    MergeByKey(&'static str),
    /// A list of scalars: the patch's values are added to the list (a set union).
    MergePrimitives,
}

/// What upstream k8s.io/api declares for one list field: its patch strategy
/// (`patchStrategy`/`patchMergeKey` tags) and its `+listType`/`+listMapKey` markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRule {
    /// The message the field belongs to (its proto name, e.g. "PodSpec").
    pub message: &'static str,
    /// The field's JSON name.
    pub field: &'static str,
    /// `x-kubernetes-patch-strategy`: "merge" or "merge,retainKeys"; None: replace.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: "atomic", "set" or "map".
    pub list_type: &'static str,
    /// `x-kubernetes-list-map-keys` (for "map" lists).
    pub map_keys: &'static [&'static str],
}

const fn rule(
    message: &'static str,
    field: &'static str,
    patch_strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    list_type: &'static str,
    map_keys: &'static [&'static str],
) -> ListRule {
    ListRule {
        message,
        field,
        patch_strategy,
        merge_key,
        list_type,
        map_keys,
    }
}

const MERGE: Option<&str> = Some("merge");
const ATOMIC: &str = "atomic";

/// Every list field of the object messages whose upstream type carries patch or list
/// markers, exactly as k8s.io/api and k8s.io/apimachinery declare them. A list not here
/// has no strategy: a patch replaces it.
#[rustfmt::skip]
pub const LIST_RULES: &[ListRule] = &[
    rule("ObjectMeta", "ownerReferences", MERGE, Some("uid"), "map", &["uid"]),
    rule("ObjectMeta", "finalizers", MERGE, None, "set", &[]),
    rule("LabelSelector", "matchExpressions", None, None, ATOMIC, &[]),
    rule("LabelSelectorRequirement", "values", None, None, ATOMIC, &[]),
    rule("NamespaceSpec", "finalizers", None, None, ATOMIC, &[]),
    rule("NodeSpec", "podCIDRs", MERGE, None, "set", &[]),
    rule("NodeSpec", "taints", None, None, ATOMIC, &[]),
    rule("NodeStatus", "conditions", MERGE, Some("type"), "map", &["type"]),
    rule("NodeStatus", "addresses", MERGE, Some("type"), "map", &["type"]),
    rule("PodSpec", "containers", MERGE, Some("name"), "map", &["name"]),
    rule("PodSpec", "initContainers", MERGE, Some("name"), "map", &["name"]),
    rule("PodSpec", "volumes", Some("merge,retainKeys"), Some("name"), "map", &["name"]),
    rule("PodSpec", "tolerations", None, None, ATOMIC, &[]),
    rule("Container", "command", None, None, ATOMIC, &[]),
    rule("Container", "args", None, None, ATOMIC, &[]),
    rule("Container", "ports", MERGE, Some("containerPort"), "map", &["containerPort", "protocol"]),
    rule("Container", "env", MERGE, Some("name"), "map", &["name"]),
    rule("Container", "volumeMounts", MERGE, Some("mountPath"), "map", &["mountPath"]),
    rule("ExecAction", "command", None, None, ATOMIC, &[]),
    rule("NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", None, None, ATOMIC, &[]),
    rule("NodeSelector", "nodeSelectorTerms", None, None, ATOMIC, &[]),
    rule("NodeSelectorTerm", "matchExpressions", None, None, ATOMIC, &[]),
    rule("NodeSelectorTerm", "matchFields", None, None, ATOMIC, &[]),
    rule("NodeSelectorRequirement", "values", None, None, ATOMIC, &[]),
    rule("PodStatus", "conditions", MERGE, Some("type"), "map", &["type"]),
    rule("PodStatus", "podIPs", MERGE, Some("ip"), "map", &["ip"]),
    rule("PodStatus", "containerStatuses", None, None, ATOMIC, &[]),
    rule("PodStatus", "initContainerStatuses", None, None, ATOMIC, &[]),
    rule("ServiceSpec", "ports", MERGE, Some("port"), "map", &["port", "protocol"]),
    rule("ServiceSpec", "clusterIPs", None, None, ATOMIC, &[]),
    rule("PersistentVolumeClaimSpec", "accessModes", None, None, ATOMIC, &[]),
    rule("PersistentVolumeClaimStatus", "accessModes", None, None, ATOMIC, &[]),
    rule("DaemonSetStatus", "conditions", MERGE, Some("type"), "map", &["type"]),
    rule("StatefulSetSpec", "volumeClaimTemplates", None, None, ATOMIC, &[]),
    rule("StatefulSetStatus", "conditions", MERGE, Some("type"), "map", &["type"]),
];

impl ListRule {
    /// The strategy a strategic merge patch follows for this list.
    pub fn strategy(&self) -> ListStrategy {
        match (self.patch_strategy, self.merge_key) {
            (Some(s), Some(key)) if s.split(',').any(|p| p == "merge") => {
                ListStrategy::MergeByKey(key)
            }
            (Some(s), None) if s.split(',').any(|p| p == "merge") => ListStrategy::MergePrimitives,
            _ => ListStrategy::Replace,
        }
    }

    /// Whether the patch strategy includes `retainKeys`.
    pub fn retain_keys(&self) -> bool {
        self.patch_strategy
            .is_some_and(|s| s.split(',').any(|p| p == "retainKeys"))
    }
}

/// The rule of `message`'s field `field` (JSON name), if upstream declares one.
pub fn list_rule(message: &str, field: &str) -> Option<&'static ListRule> {
    LIST_RULES
        .iter()
        .find(|r| r.message == message && r.field == field)
}

/// A scalar or message type, as a field holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    String,
    Int32,
    Int64,
    Boolean,
    /// `float` (format "float").
    Float,
    /// `double` (format "double").
    Double,
    /// Base64 in JSON (format "byte").
    Bytes,
    /// A bare integer or a string (Kubernetes IntOrString).
    IntOrString,
    /// A Kubernetes quantity ("100m", "128Mi"); numbers are accepted too.
    Quantity,
    /// Any JSON object, kept as JSON text in the proto (managedFields' fieldsV1).
    Object,
    /// Another object message, by its proto name.
    Message(String),
}

/// How a field holds its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    One(Type),
    /// A JSON array.
    List(Type),
    /// A JSON object with string keys.
    Map(Type),
}

/// One field of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The JSON name (`containerPort`, `podIP`).
    pub name: String,
    /// The proto comment on the field (may be empty).
    pub description: String,
    pub shape: Shape,
    /// The field's list rule, for lists upstream gives one.
    pub list: Option<&'static ListRule>,
}

/// One object message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The proto name ("DaemonSetSpec").
    pub name: String,
    /// The `.proto` file it is declared in ("twinset/v1/apps.proto").
    pub file: String,
    /// The proto comment on the message (may be empty).
    pub description: String,
    /// In declaration order.
    pub fields: Vec<Field>,
}

impl Message {
    /// The field named `json`.
    pub fn field(&self, json: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == json)
    }

    /// The OpenAPI definition name upstream gives this type
    /// (`io.k8s.api.apps.v1.DaemonSet`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`).
    pub fn definition_name(&self) -> String {
        definition_name(&self.name, &self.file)
    }
}

/// The OpenAPI definition name of the message `name` declared in `file`.
fn definition_name(name: &str, file: &str) -> String {
    let package = match (name, file) {
        ("IntOrString", _) => "io.k8s.apimachinery.pkg.util.intstr",
        // Upstream keeps ObjectReference in core/v1, not in meta.
        ("ObjectReference", _) => "io.k8s.api.core.v1",
        (_, "twinset/v1/meta.proto") => "io.k8s.apimachinery.pkg.apis.meta.v1",
        (_, "twinset/v1/apps.proto") => "io.k8s.api.apps.v1",
        _ => "io.k8s.api.core.v1",
    };
    format!("{package}.{name}")
}

/// The definition name of the quantity type (maps of quantities refer to it).
pub const QUANTITY_DEFINITION: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Every object message (`meta`, `core` and `apps`; `api.proto`'s request messages are
/// not objects).
#[derive(Debug)]
pub struct Schema {
    messages: BTreeMap<String, Message>,
}

impl Schema {
    /// The message named `name`.
    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    /// The top-level message of `kind` (its proto message has the kind's name).
    pub fn root(&self, kind: Kind) -> &Message {
        self.messages
            .get(kind.as_str())
            .expect("every kind has a message of its name")
    }

    /// Every message, by name.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }

    /// The names of the messages reachable from `roots` (the roots included), sorted.
    pub fn reachable<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            let Some(m) = self.messages.get(&name) else {
                continue;
            };
            if !seen.insert(name) {
                continue;
            }
            for f in &m.fields {
                let (Shape::One(Type::Message(t))
                | Shape::List(Type::Message(t))
                | Shape::Map(Type::Message(t))) = &f.shape
                else {
                    continue;
                };
                todo.push(t.clone());
            }
        }
        seen
    }

    /// The field at `path` (JSON names from the kind's root; list elements and map
    /// values are not represented) and the message that holds it.
    pub fn field_at(&self, kind: Kind, path: &[&str]) -> Option<(&Message, &Field)> {
        let (last, parents) = path.split_last()?;
        let mut msg = self.root(kind);
        for name in parents {
            let f = msg.field(name)?;
            let (Shape::One(Type::Message(t))
            | Shape::List(Type::Message(t))
            | Shape::Map(Type::Message(t))) = &f.shape
            else {
                return None;
            };
            msg = self.messages.get(t)?;
        }
        msg.field(last).map(|f| (msg, f))
    }
}

/// The fields manifests show as a free JSON object: managedFields' fieldsV1 (JSON text in
/// the proto, `serde_support::json_text`) and a ControllerRevision's data (the set's
/// patch, `serde_support::revision_data`), upstream's RawExtension.
const OBJECT_FIELDS: [&str; 2] = [
    ".twinset.v1.ManagedFieldsEntry.fields_v1",
    ".twinset.v1.ControllerRevision.data",
];

/// The schema, read from the descriptors on first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into this crate decodes");
        build(&set)
    })
}

/// The strategy of the list at `path` (JSON field names from the object root; list
/// elements are not represented, e.g. ["spec","template","spec","containers","env"]) of
/// `kind`; Replace for a path that is not a list or unknown.
pub fn list_strategy(kind: Kind, path: &[&str]) -> ListStrategy {
    match schema().field_at(kind, path) {
        Some((
            _,
            Field {
                shape: Shape::List(_),
                list: Some(rule),
                ..
            },
        )) => rule.strategy(),
        _ => ListStrategy::Replace,
    }
}

/// Whether the field at `path` has `retainKeys` (volumes' elements).
pub fn retain_keys(kind: Kind, path: &[&str]) -> bool {
    schema()
        .field_at(kind, path)
        .and_then(|(_, f)| f.list)
        .is_some_and(ListRule::retain_keys)
}

const OBJECT_FILES: [&str; 3] = [
    "twinset/v1/meta.proto",
    "twinset/v1/core.proto",
    "twinset/v1/apps.proto",
];

fn build(set: &FileDescriptorSet) -> Schema {
    let mut messages = BTreeMap::new();
    for file in set.file.iter().filter(|f| OBJECT_FILES.contains(&f.name())) {
        let comments = comments(file);
        for (i, msg) in file.message_type.iter().enumerate() {
            let at = |path: &[i32]| comments.get(path).cloned().unwrap_or_default();
            let fields = msg
                .field
                .iter()
                .enumerate()
                .map(|(j, f)| {
                    let name = json_name(f.name());
                    let qualified = format!(".{}.{}.{}", file.package(), msg.name(), f.name());
                    let shape = if OBJECT_FIELDS.contains(&qualified.as_str()) {
                        Shape::One(Type::Object)
                    } else {
                        shape(msg, f, QUANTITY_MAPS.contains(&qualified.as_str()))
                    };
                    let list = list_rule(msg.name(), &name);
                    Field {
                        description: at(&[4, i as i32, 2, j as i32]),
                        name,
                        shape,
                        list,
                    }
                })
                .collect();
            messages.insert(
                msg.name().to_string(),
                Message {
                    name: msg.name().to_string(),
                    file: file.name().to_string(),
                    description: at(&[4, i as i32]),
                    fields,
                },
            );
        }
    }
    Schema { messages }
}

/// The JSON name of a proto field: build.rs's renames, else camelCase (as serde's
/// `rename_all = "camelCase"` writes it).
fn json_name(proto: &str) -> String {
    if let Some((_, json)) = RENAMES.iter().find(|(p, _)| *p == proto) {
        return (*json).to_string();
    }
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn shape(msg: &DescriptorProto, f: &prost_types::FieldDescriptorProto, quantities: bool) -> Shape {
    let repeated = f.label() == Label::Repeated;
    if repeated && f.r#type() == ProtoType::Message {
        // A map's entries are a nested message marked map_entry: its `value` field is the type.
        let entry = msg.nested_type.iter().find(|n| {
            n.options.as_ref().is_some_and(|o| o.map_entry())
                && f.type_name().ends_with(&format!(".{}", n.name()))
        });
        if let Some(entry) = entry {
            let value = entry
                .field
                .iter()
                .find(|v| v.name() == "value")
                .expect("a map entry has a value field");
            let t = if quantities {
                Type::Quantity
            } else {
                scalar(value)
            };
            return Shape::Map(t);
        }
    }
    let t = scalar(f);
    if repeated {
        Shape::List(t)
    } else {
        Shape::One(t)
    }
}

fn scalar(f: &prost_types::FieldDescriptorProto) -> Type {
    match f.r#type() {
        ProtoType::Int32
        | ProtoType::Sint32
        | ProtoType::Sfixed32
        | ProtoType::Uint32
        | ProtoType::Fixed32 => Type::Int32,
        ProtoType::Int64
        | ProtoType::Sint64
        | ProtoType::Sfixed64
        | ProtoType::Uint64
        | ProtoType::Fixed64 => Type::Int64,
        ProtoType::Bool => Type::Boolean,
        ProtoType::Float => Type::Float,
        ProtoType::Double => Type::Double,
        ProtoType::Bytes => Type::Bytes,
        ProtoType::Message | ProtoType::Group => {
            let name = f.type_name().rsplit('.').next().unwrap_or_default();
            if name == "IntOrString" {
                Type::IntOrString
            } else {
                Type::Message(name.to_string())
            }
        }
        // Enums are written by name, as strings.
        ProtoType::String | ProtoType::Enum => Type::String,
    }
}

/// The leading comments of a file's declarations by their descriptor path, each joined
/// into one paragraph.
fn comments(file: &FileDescriptorProto) -> BTreeMap<Vec<i32>, String> {
    let Some(info) = &file.source_code_info else {
        return BTreeMap::new();
    };
    info.location
        .iter()
        .filter_map(|l| {
            let text = l.leading_comments();
            let joined = text
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (!joined.is_empty()).then(|| (l.path.clone(), joined))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_have_their_json_names_and_types() {
        let s = schema();
        let c = s.message("Container").unwrap();
        assert_eq!(c.field("image").unwrap().shape, Shape::One(Type::String));
        assert_eq!(
            c.field("ports").unwrap().shape,
            Shape::List(Type::Message("ContainerPort".into()))
        );
        assert_eq!(
            c.field("volumeMounts").unwrap().shape,
            Shape::List(Type::Message("VolumeMount".into()))
        );
        let status = s.message("PodStatus").unwrap();
        assert!(status.field("podIP").is_some() && status.field("podIp").is_none());
        assert_eq!(
            status.field("podIPs").unwrap().shape,
            Shape::List(Type::Message("PodIP".into()))
        );
        let meta = s.message("ObjectMeta").unwrap();
        assert_eq!(
            meta.field("labels").unwrap().shape,
            Shape::Map(Type::String)
        );
        assert_eq!(
            meta.field("generation").unwrap().shape,
            Shape::One(Type::Int64)
        );
        let m = s.message("ManagedFieldsEntry").unwrap();
        assert_eq!(m.field("fieldsV1").unwrap().shape, Shape::One(Type::Object));
        let r = s.message("ResourceRequirements").unwrap();
        assert_eq!(r.field("limits").unwrap().shape, Shape::Map(Type::Quantity));
        let ru = s.message("RollingUpdateDaemonSet").unwrap();
        assert_eq!(
            ru.field("maxUnavailable").unwrap().shape,
            Shape::One(Type::IntOrString)
        );
        let ds = s.root(Kind::DaemonSet);
        assert!(ds.field("apiVersion").is_some() && ds.field("kind").is_some());
        assert_eq!(ds.definition_name(), "io.k8s.api.apps.v1.DaemonSet");
        assert_eq!(
            meta.definition_name(),
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            s.message("Container").unwrap().definition_name(),
            "io.k8s.api.core.v1.Container"
        );
        assert!(
            s.message("GetRequest").is_none(),
            "api.proto is not objects"
        );
    }

    #[test]
    fn proto_comments_are_descriptions() {
        let s = schema();
        let meta = s.message("ObjectMeta").unwrap();
        assert_eq!(
            meta.description,
            "Metadata that every persisted object carries."
        );
        assert_eq!(
            meta.field("generation").unwrap().description,
            "Bumped on every change of the spec."
        );
    }

    #[test]
    fn merge_keys_follow_upstream() {
        use ListStrategy::*;
        const TEMPLATE: &str = "spec.template.spec";
        let (ds, pod, sts) = (Kind::DaemonSet, Kind::Pod, Kind::StatefulSet);
        let cases: &[(Kind, &str, ListStrategy)] = &[
            (ds, "T.containers", MergeByKey("name")),
            (ds, "T.initContainers", MergeByKey("name")),
            (ds, "T.containers.env", MergeByKey("name")),
            (ds, "T.containers.ports", MergeByKey("containerPort")),
            (ds, "T.containers.volumeMounts", MergeByKey("mountPath")),
            (ds, "T.containers.args", Replace),
            (ds, "T.volumes", MergeByKey("name")),
            (ds, "T.tolerations", Replace),
            (ds, "metadata.finalizers", MergePrimitives),
            (ds, "metadata.ownerReferences", MergeByKey("uid")),
            (ds, "spec.selector.matchExpressions", Replace),
            (ds, "status.conditions", MergeByKey("type")),
            (pod, "spec.containers", MergeByKey("name")),
            (pod, "status.podIPs", MergeByKey("ip")),
            (Kind::Service, "spec.ports", MergeByKey("port")),
            (Kind::Node, "status.addresses", MergeByKey("type")),
            (Kind::Node, "spec.taints", Replace),
            (Kind::Node, "spec.podCIDRs", MergePrimitives),
            (sts, "spec.volumeClaimTemplates", Replace),
            (
                sts,
                "spec.volumeClaimTemplates.metadata.finalizers",
                MergePrimitives,
            ),
            // Not lists, or unknown: Replace.
            (ds, "spec.template", Replace),
            (ds, "spec.nope", Replace),
            (ds, "", Replace),
            (ds, "metadata.labels", Replace),
        ];
        for (kind, path, want) in cases {
            let path = match path.strip_prefix('T') {
                Some(rest) => format!("{TEMPLATE}{rest}"),
                None => path.to_string(),
            };
            let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
            assert_eq!(list_strategy(*kind, &segments), *want, "{kind} {path}");
            let volumes = path.ends_with(".volumes");
            assert_eq!(retain_keys(*kind, &segments), volumes, "{kind} {path}");
        }
    }

    #[test]
    fn every_rule_names_a_list_field_that_exists() {
        let s = schema();
        for r in LIST_RULES {
            let m = s
                .message(r.message)
                .unwrap_or_else(|| panic!("{} is not a message", r.message));
            let f = m
                .field(r.field)
                .unwrap_or_else(|| panic!("{}.{} does not exist", r.message, r.field));
            assert!(
                matches!(f.shape, Shape::List(_)),
                "{}.{}",
                r.message,
                r.field
            );
            if let Some(key) = r.merge_key {
                let Shape::List(Type::Message(elem)) = &f.shape else {
                    panic!("{}.{} merges by key but holds scalars", r.message, r.field)
                };
                assert!(
                    s.message(elem).unwrap().field(key).is_some(),
                    "{elem}.{key}"
                );
                assert!(r.map_keys.contains(&key));
            }
        }
    }

    #[test]
    fn reachable_follows_references() {
        let s = schema();
        let r = s.reachable(["DaemonSet"]);
        for m in [
            "DaemonSet",
            "ObjectMeta",
            "PodSpec",
            "Container",
            "Probe",
            "OwnerReference",
        ] {
            assert!(r.contains(m), "{m}");
        }
        assert!(!r.contains("StatefulSet") && !r.contains("IntOrString"));
    }
}
