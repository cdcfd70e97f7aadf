//! Patches of objects in their JSON shape, as kube-apiserver applies them: JSON merge
//! patch (RFC 7386) and the strategic merge patch that `kubectl apply` sends (lists merged
//! by their merge keys, and the directives `$patch`, `$setElementOrder/…`, `$retainKeys`,
//! `$deleteFromPrimitiveList/…`). Pure functions over `serde_json::Value`; how each list
//! merges comes from a [`PatchMeta`] (the kind's schema in the server, a table in tests).

use serde_json::{Map, Value};

pub use crate::schema::ListStrategy;

/// Where list strategies come from.
pub trait PatchMeta {
    /// The strategy of the list at `path` (JSON field names from the object's root; list
    /// elements are not represented).
    fn list_strategy(&self, path: &[&str]) -> ListStrategy;
}

impl PatchMeta for crate::Kind {
    fn list_strategy(&self, path: &[&str]) -> ListStrategy {
        crate::schema::list_strategy(*self, path)
    }
}

/// Why a patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch is not the JSON object a merge patch must be.
    #[error("the patch must be a JSON object")]
    NotAnObject,
    /// A part of the patch does not fit what it patches.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, as `.spec.template.spec.containers`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: &[String], message: impl Into<String>) -> PatchError {
    PatchError::Invalid {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.iter().map(|p| format!(".{p}")).collect()
        },
        message: message.into(),
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Applies a strategic merge patch to `original`: maps merge key by key (null removes),
/// lists merge as `meta` says (by merge key, as a set of primitives, or replaced).
pub fn strategic_merge(
    meta: &dyn PatchMeta,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject);
    };
    let orig = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    Ok(merge_map(meta, &mut path, orig, patch)?
        .map(Value::Object)
        .unwrap_or(Value::Object(Map::new())))
}

/// Applies a JSON patch (RFC 6902: add, remove, replace, move, copy, test) to `target`;
/// on any failed operation nothing is applied.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::Invalid {
            path: ".".into(),
            message: "a JSON patch must be a list of operations".into(),
        });
    };
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let fail = |message: String| PatchError::Invalid {
            path: format!("operation {i}"),
            message,
        };
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| fail(format!("{name} is missing")))
        };
        let path = pointer(field("path")?).map_err(&fail)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| fail("value is missing".into()))
        };
        match field("op")? {
            "add" => add(&mut doc, &path, value()?).map_err(&fail)?,
            "remove" => {
                remove(&mut doc, &path).map_err(&fail)?;
            }
            "replace" => {
                remove(&mut doc, &path).map_err(&fail)?;
                add(&mut doc, &path, value()?).map_err(&fail)?;
            }
            "move" => {
                let from = pointer(field("from")?).map_err(&fail)?;
                if path.starts_with(&from) && path.len() > from.len() {
                    return Err(fail("cannot move a value into itself".into()));
                }
                let v = remove(&mut doc, &from).map_err(&fail)?;
                add(&mut doc, &path, v).map_err(&fail)?;
            }
            "copy" => {
                let from = pointer(field("from")?).map_err(&fail)?;
                let v = get(&doc, &from)
                    .cloned()
                    .ok_or_else(|| fail("from: no such value".into()))?;
                add(&mut doc, &path, v).map_err(&fail)?;
            }
            "test" => {
                if get(&doc, &path) != Some(&value()?) {
                    return Err(fail(format!("test failed at {}", field("path")?)));
                }
            }
            other => return Err(fail(format!("unknown op {other:?}"))),
        }
    }
    Ok(doc)
}

/// The reference tokens of a JSON pointer (RFC 6901).
fn pointer(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| format!("path {p:?} does not start with /"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("no value at /{}", path.join("/")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, up)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, up)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let at = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("index {last} is out of range"))?
            };
            a.insert(at, value);
            Ok(())
        }
        _ => Err(format!("/{} is not a map or list", up.join("/"))),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, String> {
    let (last, up) = path
        .split_last()
        .ok_or_else(|| "cannot remove the whole document".to_string())?;
    let missing = || format!("no value at /{}", path.join("/"));
    match parent(doc, up)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Merges `patch` into the map `orig` at `path`; None when the patch deletes the map.
fn merge_map(
    meta: &dyn PatchMeta,
    path: &mut Vec<String>,
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "replace" => {
            let mut replaced = Map::new();
            let mut p = patch.clone();
            p.remove(PATCH);
            merge_into(meta, path, &mut replaced, &p)?;
            return Ok(Some(replaced));
        }
        Some(other) => return Err(invalid(path, format!("unknown $patch directive {other}"))),
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let Value::Array(keep) = keep else {
            return Err(invalid(path, "$retainKeys must be a list of field names"));
        };
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    merge_into(meta, path, &mut orig, patch)?;
    Ok(Some(orig))
}

/// Merges the fields of `patch` (directives included) into `orig`.
fn merge_into(
    meta: &dyn PatchMeta,
    path: &mut Vec<String>,
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    let mut orders = Vec::new();
    for (k, v) in patch {
        if k == PATCH || k == RETAIN_KEYS {
            continue;
        }
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            orders.push((field.to_string(), v));
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVES) {
            let Value::Array(gone) = v else {
                return Err(invalid(path, format!("{k} must be a list")));
            };
            if let Some(Value::Array(items)) = orig.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(invalid(path, format!("unknown directive {k}")));
        }
        path.push(k.clone());
        let merged = match v {
            Value::Null => None,
            Value::Object(p) => {
                let cur = match orig.remove(k) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                merge_map(meta, path, cur, p)?.map(Value::Object)
            }
            Value::Array(p) => {
                let cur = match orig.remove(k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                Some(Value::Array(merge_list(meta, path, cur, p)?))
            }
            scalar => Some(scalar.clone()),
        };
        path.pop();
        match merged {
            Some(m) => {
                orig.insert(k.clone(), m);
            }
            None => {
                orig.remove(k);
            }
        }
    }
    for (field, order) in orders {
        let Value::Array(order) = order else {
            return Err(invalid(path, format!("{SET_ORDER}{field} must be a list")));
        };
        path.push(field.clone());
        let strategy = list_strategy(meta, path);
        path.pop();
        if let Some(Value::Array(items)) = orig.get_mut(&field) {
            reorder(items, order, strategy);
        }
    }
    Ok(())
}

fn list_strategy(meta: &dyn PatchMeta, path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    meta.list_strategy(&p)
}

/// Merges the list `patch` into `orig` at `path`.
fn merge_list(
    meta: &dyn PatchMeta,
    path: &mut Vec<String>,
    orig: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    match list_strategy(meta, path) {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::MergePrimitives => {
            let mut out = orig;
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeByKey(key) => {
            let replace = patch
                .iter()
                .any(|p| p.get(PATCH).and_then(Value::as_str) == Some("replace"));
            let mut out = if replace { Vec::new() } else { orig };
            for p in patch {
                let Value::Object(pm) = p else {
                    return Err(invalid(path, "expected a map in a list merged by key"));
                };
                let directive = pm.get(PATCH).and_then(Value::as_str);
                if directive == Some("replace") && pm.len() == 1 {
                    continue;
                }
                let id = pm.get(key).ok_or_else(|| {
                    invalid(
                        path,
                        format!("an element does not contain the merge key {key:?}"),
                    )
                })?;
                let at = out.iter().position(|o| o.get(key) == Some(id));
                if directive == Some("delete") {
                    out.retain(|o| o.get(key) != Some(id));
                    continue;
                }
                let cur = match at.map(|i| out.remove(i)) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Some(m) = merge_map(meta, path, cur, pm)? {
                    match at {
                        Some(i) => out.insert(i, Value::Object(m)),
                        None => out.push(Value::Object(m)),
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Puts `items` in the order `$setElementOrder` gives; items it does not name keep their
/// relative order after the named ones.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| {
        order.iter().position(|o| match strategy {
            ListStrategy::MergeByKey(key) => o.get(key).is_some() && o.get(key) == item.get(key),
            _ => o == item,
        })
    };
    let mut ranked: Vec<(usize, Value)> = items
        .drain(..)
        .map(|i| (rank(&i).unwrap_or(usize::MAX), i))
        .collect();
    ranked.sort_by_key(|(r, _)| *r);
    items.extend(ranked.into_iter().map(|(_, i)| i));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The list strategies of a pod template, as Kubernetes declares them.
    struct Table;

    impl PatchMeta for Table {
        fn list_strategy(&self, path: &[&str]) -> ListStrategy {
            match path.last().copied() {
                Some("containers" | "volumes" | "env") => ListStrategy::MergeByKey("name"),
                Some("ports") => ListStrategy::MergeByKey("containerPort"),
                Some("volumeMounts") => ListStrategy::MergeByKey("mountPath"),
                Some("finalizers") => ListStrategy::MergePrimitives,
                _ => ListStrategy::Replace,
            }
        }
    }

    fn smp(original: Value, patch: Value) -> Value {
        strategic_merge(&Table, &original, &patch).unwrap()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
        let mut scalar = json!({"a": 1});
        merge_patch(&mut scalar, &json!(["x"]));
        assert_eq!(scalar, json!(["x"]));
    }

    #[test]
    fn json_patch_follows_rfc_6902_and_is_all_or_nothing() {
        let doc = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"args": ["x", "y"]}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/spec/args/-", "value": "z"},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "replace", "path": "/spec/args/0", "value": "w"},
                {"op": "copy", "from": "/spec/args", "path": "/spec/copy"},
                {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
                {"op": "test", "path": "/spec/moved/1", "value": "y"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {}}, "spec": {"args": ["w", "y", "z"], "moved": ["w", "y", "z"]}})
        );
        let e = json_patch(
            &doc,
            &json!([{"op": "remove", "path": "/spec/args/0"}, {"op": "test", "path": "/spec/args/0", "value": "x"}]),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "operation 1: test failed at /spec/args/0");
        let e = json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).unwrap_err();
        assert_eq!(e.to_string(), "operation 0: no value at /nope");
    }

    #[test]
    fn keyed_lists_merge_by_their_key() {
        let orig = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        // kubectl apply of an edited manifest: a's image changes, an env var is added.
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "a:2",
                "$setElementOrder/env": [{"name": "X"}, {"name": "Y"}],
                "env": [{"name": "Y", "value": "2"}]}]
        }});
        assert_eq!(
            smp(orig, patch),
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "b", "image": "b:1"}
            ]}})
        );
    }

    #[test]
    fn directives_delete_replace_and_retain() {
        let orig = json!({"spec": {
            "containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}],
            "volumes": [{"name": "v", "hostPath": {"path": "/x"}}],
            "tolerations": [{"key": "k1"}, {"key": "k2"}],
            "finalizers": ["f1", "f2"],
            "nodeSelector": {"disk": "ssd", "zone": "a"}
        }});
        let patch = json!({"spec": {
            "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "c"}],
            "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}],
            "tolerations": [{"key": "k3"}],
            "$deleteFromPrimitiveList/finalizers": ["f1"],
            "nodeSelector": {"$patch": "replace", "zone": "b"}
        }});
        assert_eq!(
            smp(orig, patch),
            json!({"spec": {
                "containers": [{"name": "a", "image": "a"}, {"name": "c", "image": "c"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k3"}],
                "finalizers": ["f2"],
                "nodeSelector": {"zone": "b"}
            }})
        );
    }

    #[test]
    fn a_whole_list_can_be_replaced_and_nulls_remove() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "replicas": 3, "x": {"y": 1}}});
        let patch = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z"}], "replicas": null, "x": {"$patch": "delete"}}});
        assert_eq!(
            smp(orig, patch),
            json!({"spec": {"containers": [{"name": "z"}]}})
        );
    }

    #[test]
    fn primitives_merge_as_a_set_and_reorder() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c", "a"], "$setElementOrder/finalizers": ["c", "b", "a"]}});
        assert_eq!(
            smp(orig, patch),
            json!({"metadata": {"finalizers": ["c", "b", "a"]}})
        );
    }

    #[test]
    fn bad_patches_are_refused_with_where() {
        let orig = json!({"spec": {"containers": [{"name": "a"}]}});
        let e = strategic_merge(
            &Table,
            &orig,
            &json!({"spec": {"containers": [{"image": "x"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            ".spec.containers: an element does not contain the merge key \"name\""
        );
        let e = strategic_merge(&Table, &orig, &json!({"spec": {"$bogus": 1}})).unwrap_err();
        assert_eq!(e.to_string(), ".spec: unknown directive $bogus");
        assert_eq!(
            strategic_merge(&Table, &orig, &json!([1])).unwrap_err(),
            PatchError::NotAnObject
        );
        let e = strategic_merge(&Table, &orig, &json!({"x": {"$patch": "explode"}})).unwrap_err();
        assert_eq!(e.to_string(), ".x: unknown $patch directive \"explode\"");
    }
}
