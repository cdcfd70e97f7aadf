//! Field ownership, as kube-apiserver keeps it in `metadata.managedFields`: each field
//! manager owns the fields it set. A server-side apply by one manager that would change a
//! field another manager owns is a conflict unless forced; fields a manager stops applying
//! are removed unless another manager owns them. Other writes (create, replace, patch,
//! twinset apply) give their manager the fields they changed. Pure functions over the
//! objects' JSON shape; list elements are identified as [`crate::patch`] merges them.
//!
//! A field path is a list of FieldsV1 tokens: `f:<field>`, `k:<key as JSON>` for an element
//! of a list merged by key, `v:<value as JSON>` for a member of a set of primitives, and
//! `.` for a list element itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::patch::{strategic_merge, ListStrategy, PatchError, PatchMeta};
use crate::v1::ManagedFieldsEntry;

/// One field path.
pub type FieldPath = Vec<String>;
/// A set of field paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// The operation of a server-side apply.
pub const APPLY: &str = "Apply";
/// The operation of every other write.
pub const UPDATE: &str = "Update";

/// Who writes, and when: what a managed fields entry records.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The apiVersion the object was written in.
    pub api_version: &'a str,
    /// When (RFC 3339).
    pub time: &'a str,
}

/// A field that a server-side apply would change while another manager owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns it.
    pub manager: String,
    /// The field, as `.spec.template.spec.containers[name="web"].image`.
    pub field: String,
}

/// The part of an object's JSON that managers own: everything but apiVersion, kind,
/// status and the server's metadata (labels, annotations, owner references and
/// finalizers are the user's).
pub fn user_fields(object: &Value) -> Value {
    let mut out = Map::new();
    let Value::Object(m) = object else {
        return Value::Object(out);
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let mut meta = Map::new();
                for f in ["labels", "annotations", "ownerReferences", "finalizers"] {
                    if let Some(x) = v.get(f) {
                        meta.insert(f.to_string(), x.clone());
                    }
                }
                if !meta.is_empty() {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Every field path `value` sets (of its [`user_fields`]).
pub fn fields(meta: &dyn PatchMeta, value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let mut names = Vec::new();
    walk(
        meta,
        &mut names,
        &mut Vec::new(),
        &user_fields(value),
        &mut out,
    );
    out
}

fn walk(
    meta: &dyn PatchMeta,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    value: &Value,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                names.push(k.clone());
                path.push(format!("f:{k}"));
                walk(meta, names, path, v, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let n: Vec<&str> = names.iter().map(String::as_str).collect();
            match meta.list_strategy(&n) {
                ListStrategy::MergeByKey(key) => {
                    for item in items {
                        let Some(token) = key_token(key, item) else {
                            continue;
                        };
                        path.push(token);
                        path.push(".".into());
                        out.insert(path.clone());
                        path.pop();
                        walk(meta, names, path, item, out);
                        path.pop();
                    }
                }
                ListStrategy::MergePrimitives => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        out.insert(path.clone());
                        path.pop();
                    }
                }
                ListStrategy::Replace => {
                    out.insert(path.clone());
                }
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

fn key_token(key: &str, item: &Value) -> Option<String> {
    let id = item.get(key)?;
    let mut m = Map::new();
    m.insert(key.to_string(), id.clone());
    Some(format!("k:{}", Value::Object(m)))
}

/// The value at `path` in `value` (for `.`, the element itself).
pub fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = value;
    for token in path {
        cur = step(cur, token)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, token: &str) -> Option<&'a Value> {
    if token == "." {
        return Some(cur);
    }
    if let Some(f) = token.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = token.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items
            .iter()
            .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    }
    let v: Value = serde_json::from_str(token.strip_prefix("v:")?).ok()?;
    items.iter().find(|i| **i == v)
}

/// Removes the field at `path` from `value` (an element, for a path ending in `.`).
fn remove_at(value: &mut Value, path: &[String]) {
    let path = match path.last().map(String::as_str) {
        Some(".") => &path[..path.len() - 1],
        _ => path,
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for token in parents {
        let next = match token.strip_prefix("f:") {
            Some(f) => cur.get_mut(f),
            None => {
                let at = cur.as_array().and_then(|items| position(items, token));
                match (at, cur.as_array_mut()) {
                    (Some(i), Some(items)) => items.get_mut(i),
                    _ => None,
                }
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        if let Some(i) = position(items, last) {
            items.remove(i);
        }
    }
}

/// Removes the containers above `path` that its removal left empty.
fn prune(value: &mut Value, path: &[String]) {
    for end in (1..path.len()).rev() {
        let parent = &path[..end];
        let empty = match value_at(value, parent) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !empty {
            return;
        }
        remove_at(value, parent);
    }
}

fn position(items: &[Value], token: &str) -> Option<usize> {
    let wanted = step(&Value::Array(items.to_vec()), token)?.clone();
    items.iter().position(|i| *i == wanted)
}

/// How a field path is shown in messages: `.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for token in path {
        if let Some(f) = token.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = token.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = token.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// The FieldsV1 trie of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for token in path {
            let next = cur
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else {
                break;
            };
            cur = m;
        }
    }
    Value::Object(root)
}

/// The set a FieldsV1 trie holds (every leaf is a path).
pub fn from_fields_v1(trie: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    go(trie, &mut Vec::new(), &mut out);
    out
}

fn set_of(e: &ManagedFieldsEntry) -> FieldSet {
    serde_json::from_str::<Value>(&e.fields_v1)
        .map(|v| from_fields_v1(&v))
        .unwrap_or_default()
}

fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    time: &str,
    set: &FieldSet,
) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: api_version.to_string(),
        time: time.to_string(),
        fields_type: "FieldsV1".into(),
        fields_v1: to_fields_v1(set).to_string(),
    }
}

/// The managed fields after an ordinary write by `manager`: it gains every field whose
/// value the write changed (others lose them); fields the write removed belong to no one.
pub fn record_update(
    meta: &dyn PatchMeta,
    entries: &[ManagedFieldsEntry],
    writer: Writer<'_>,
    old: Option<&Value>,
    new: &Value,
) -> Vec<ManagedFieldsEntry> {
    let Writer {
        manager,
        api_version,
        time,
    } = writer;
    let new_set = fields(meta, new);
    let old_set = old.map(|o| fields(meta, o)).unwrap_or_default();
    let (old_user, new_user) = (old.map(user_fields), user_fields(new));
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| {
            old_user.as_ref().and_then(|o| value_at(o, p)) != value_at(&new_user, p)
                || !old_set.contains(*p)
        })
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return entries.to_vec();
    }
    let mut out = Vec::new();
    let mut mine = FieldSet::new();
    for e in entries {
        let mut set = set_of(e);
        set.retain(|p| !changed.contains(p) && !removed.contains(p));
        if e.manager == manager && e.operation == UPDATE {
            mine = set;
            continue;
        }
        if !set.is_empty() {
            out.push(ManagedFieldsEntry {
                fields_v1: to_fields_v1(&set).to_string(),
                ..e.clone()
            });
        }
    }
    mine.extend(changed);
    if !mine.is_empty() {
        out.push(entry(manager, UPDATE, api_version, time, &mine));
    }
    out
}

/// What a server-side apply leads to: the object (its JSON shape) and the managed fields.
#[derive(Debug)]
pub struct Applied {
    /// The object with the configuration merged in and the fields the manager dropped
    /// (that no one else owns) removed.
    pub object: Value,
    /// The managed fields after the apply.
    pub entries: Vec<ManagedFieldsEntry>,
}

/// Why a server-side apply is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields other managers own would change (not forced).
    #[error("{message}")]
    Conflicts {
        /// Each field and its owner.
        conflicts: Vec<Conflict>,
        /// kube-apiserver's message for them.
        message: String,
    },
    /// The configuration does not merge.
    #[error(transparent)]
    Patch(#[from] PatchError),
}

fn describe(conflicts: &[Conflict], api_version: &str) -> String {
    conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with {:?} using {api_version}: {}",
                c.manager, c.field
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A server-side apply of `config` by `manager` to `current` (an empty object when there
/// is none). Without `force`, a field another manager owns whose value would change is a
/// conflict; with it, the field changes hands.
pub fn apply(
    meta: &dyn PatchMeta,
    current: &Value,
    entries: &[ManagedFieldsEntry],
    writer: Writer<'_>,
    config: &Value,
    force: bool,
) -> Result<Applied, ApplyError> {
    let Writer {
        manager,
        api_version,
        time,
    } = writer;
    let applied = fields(meta, config);
    let config_user = user_fields(config);
    let current_user = user_fields(current);
    let mut conflicts = Vec::new();
    let mut others: Vec<(ManagedFieldsEntry, FieldSet)> = Vec::new();
    let mut previous = FieldSet::new();
    for e in entries {
        let set = set_of(e);
        if e.manager == manager && e.operation == APPLY {
            previous = set;
            continue;
        }
        if e.manager != manager {
            for p in set.intersection(&applied) {
                if p.last().map(String::as_str) == Some(".") {
                    continue;
                }
                if value_at(&current_user, p) != value_at(&config_user, p) {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        field: display(p),
                    });
                }
            }
        }
        others.push((e.clone(), set));
    }
    if !conflicts.is_empty() && !force {
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            describe(&conflicts, api_version)
        );
        return Err(ApplyError::Conflicts { conflicts, message });
    }
    let mut object = strategic_merge(meta, current, config)?;
    for p in previous.difference(&applied) {
        let base: &[String] = match p.last().map(String::as_str) {
            Some(".") => &p[..p.len() - 1],
            _ => p,
        };
        let kept = others
            .iter()
            .any(|(_, set)| set.iter().any(|q| q.starts_with(base)))
            || applied.iter().any(|q| q.starts_with(base) && q != p);
        if !kept {
            remove_at(&mut object, p);
            prune(&mut object, base);
        }
    }
    let mut out = Vec::new();
    for (e, mut set) in others {
        if force && e.manager != manager {
            set.retain(|p| {
                !applied.contains(p) || value_at(&current_user, p) == value_at(&config_user, p)
            });
        }
        if !set.is_empty() {
            out.push(ManagedFieldsEntry {
                fields_v1: to_fields_v1(&set).to_string(),
                ..e
            });
        }
    }
    // An unchanged set keeps its time, so that applying the same configuration again
    // writes nothing.
    let time = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == APPLY && previous == applied)
        .map_or(time, |e| e.time.as_str());
    out.push(entry(manager, APPLY, api_version, time, &applied));
    Ok(Applied {
        object,
        entries: out,
    })
}

impl ApplyError {
    /// The conflicts, for a Status's causes.
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            ApplyError::Conflicts { conflicts, .. } => conflicts,
            ApplyError::Patch(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Table;

    impl PatchMeta for Table {
        fn list_strategy(&self, path: &[&str]) -> ListStrategy {
            match path.last().copied() {
                Some("containers" | "env") => ListStrategy::MergeByKey("name"),
                Some("finalizers") => ListStrategy::MergePrimitives,
                _ => ListStrategy::Replace,
            }
        }
    }

    fn w<'a>(manager: &'a str, time: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            time,
        }
    }

    fn ds(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "x", "uid": "u", "labels": {"app": "x"}},
            "spec": {"replicas": replicas, "containers": [{"name": "c", "image": image}]},
            "status": {"ready": 1}
        })
    }

    fn owned(entries: &[ManagedFieldsEntry], manager: &str) -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.manager == manager)
            .flat_map(|e| set_of(e).into_iter().map(|p| display(&p)))
            .collect()
    }

    #[test]
    fn fields_name_leaves_elements_and_atomic_lists() {
        let v = json!({"metadata": {"name": "x", "finalizers": ["a"]},
            "spec": {"containers": [{"name": "c", "args": ["1", "2"]}], "empty": {}}, "status": {"x": 1}});
        let shown: Vec<String> = fields(&Table, &v).iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            vec![
                ".metadata.finalizers[=\"a\"]",
                ".spec.containers[name=\"c\"]",
                ".spec.containers[name=\"c\"].args",
                ".spec.containers[name=\"c\"].name",
                ".spec.empty",
            ]
        );
        let set = fields(&Table, &v);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let created = record_update(&Table, &[], w("kubectl-create", "t0"), None, &ds("a", 1));
        assert_eq!(
            owned(&created, "kubectl-create"),
            vec![
                ".metadata.labels.app",
                ".spec.containers[name=\"c\"]",
                ".spec.containers[name=\"c\"].image",
                ".spec.containers[name=\"c\"].name",
                ".spec.replicas"
            ]
        );
        let scaled = record_update(
            &Table,
            &created,
            w("kubectl-scale", "t1"),
            Some(&ds("a", 1)),
            &ds("a", 3),
        );
        assert_eq!(owned(&scaled, "kubectl-scale"), vec![".spec.replicas"]);
        assert!(!owned(&scaled, "kubectl-create").contains(&".spec.replicas".to_string()));
        // Nothing changed: nothing recorded.
        assert_eq!(
            record_update(
                &Table,
                &scaled,
                w("other", "t2"),
                Some(&ds("a", 3)),
                &ds("a", 3)
            ),
            scaled
        );
    }

    #[test]
    fn apply_conflicts_unless_forced_and_shares_equal_values() {
        let created = record_update(
            &Table,
            &[],
            w("kubectl-client-side-apply", "t0"),
            None,
            &ds("a", 1),
        );
        // The same values: shared, no conflict.
        let same = apply(
            &Table,
            &ds("a", 1),
            &created,
            w("kubectl", "t1"),
            &ds("a", 1),
            false,
        )
        .unwrap();
        assert_eq!(owned(&same.entries, "kubectl").len(), 5);
        assert_eq!(owned(&same.entries, "kubectl-client-side-apply").len(), 5);
        // A changed image: a conflict naming the owner and the field; nothing returned.
        let config = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "b"}]}});
        let e = apply(
            &Table,
            &ds("a", 1),
            &created,
            w("kubectl", "t1"),
            &config,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.containers[name=\"c\"].image"
        );
        // Forced: the image changes hands and changes; the rest stays.
        let forced = apply(
            &Table,
            &ds("a", 1),
            &created,
            w("kubectl", "t1"),
            &config,
            true,
        )
        .unwrap();
        assert_eq!(forced.object["spec"]["containers"][0]["image"], "b");
        assert_eq!(forced.object["spec"]["replicas"], 1);
        assert_eq!(forced.object["status"]["ready"], 1);
        assert!(!owned(&forced.entries, "kubectl-client-side-apply")
            .contains(&".spec.containers[name=\"c\"].image".to_string()));
        assert!(owned(&forced.entries, "kubectl")
            .contains(&".spec.containers[name=\"c\"].image".to_string()));
    }

    #[test]
    fn fields_an_applier_drops_go_unless_someone_else_owns_them() {
        let v1 = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}]}, {"name": "d", "image": "j"}]}});
        let first = apply(&Table, &json!({}), &[], w("me", "t0"), &v1, false).unwrap();
        assert_eq!(
            first.object["metadata"]["labels"],
            json!({"a": "1", "b": "2"})
        );
        // Someone else takes label b.
        let mut cur = first.object.clone();
        cur["metadata"]["labels"]["b"] = json!("3");
        let entries = record_update(
            &Table,
            &first.entries,
            w("editor", "t1"),
            Some(&first.object),
            &cur,
        );
        // The applier drops label b, the env var and container d.
        let v2 = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let second = apply(&Table, &cur, &entries, w("me", "t2"), &v2, false).unwrap();
        assert_eq!(
            second.object["metadata"]["labels"],
            json!({"a": "1", "b": "3"})
        );
        assert_eq!(
            second.object["spec"]["containers"],
            json!([{"name": "c", "image": "i"}])
        );
    }
}
