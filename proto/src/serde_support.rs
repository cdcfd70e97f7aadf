//! Helpers referenced by the serde attributes that build.rs puts on the generated messages.

/// True when a field holds its default value, so that it is left out of manifests
/// (Kubernetes omits empty fields; `get -o yaml` stays short and re-applies unchanged).
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A string field holding JSON text that manifests show as the JSON value itself
/// (managedFields' fieldsV1).
pub mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the text as the value it encodes (an empty text as nothing).
    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        v.serialize(s)
    }

    /// Reads any value and keeps it as JSON text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(if v.is_null() {
            String::new()
        } else {
            v.to_string()
        })
    }
}

/// A ControllerRevision's `data` as Kubernetes writes it: the strategic merge patch that
/// puts the revision's template back into its set, `{"spec":{"template":{…,"$patch":
/// "replace"}}}`. kubectl's `rollout history --revision` applies it to the set and
/// `rollout undo` sends it as the patch; the proto keeps the typed template.
pub mod revision_data {
    use crate::v1::PodTemplateSpec;
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{json, Value};

    /// The directive that makes the template replace the set's instead of merging.
    const PATCH: &str = "$patch";

    /// Writes the template wrapped as the patch of its set.
    pub fn serialize<S: Serializer>(
        template: &Option<PodTemplateSpec>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut t =
            serde_json::to_value(template.clone().unwrap_or_default()).map_err(S::Error::custom)?;
        if let Value::Object(m) = &mut t {
            go_empty_fields(m);
            m.insert(PATCH.into(), "replace".into());
        }
        json!({ "spec": { "template": t } }).serialize(s)
    }

    /// The empty fields Go's encoding/json writes where we leave them out
    /// (`metadata.creationTimestamp: null`, each container's `resources: {}`), so that with
    /// keys sorted as Go sorts them the data is byte for byte the patch kubectl makes of
    /// the set: `rollout undo` compares the two to skip a rollback to the template the
    /// set already has.
    fn go_empty_fields(template: &mut serde_json::Map<String, Value>) {
        if let Some(meta) = template
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
        for c in containers(template) {
            c.entry("resources").or_insert_with(|| json!({}));
        }
    }

    /// Takes out what [`go_empty_fields`] put in while still empty.
    fn drop_go_empty_fields(template: &mut serde_json::Map<String, Value>) {
        if let Some(Value::Object(meta)) = template.get_mut("metadata") {
            if meta.get("creationTimestamp") == Some(&Value::Null) {
                meta.remove("creationTimestamp");
            }
            if meta.is_empty() {
                template.remove("metadata");
            }
        }
        for c in containers(template) {
            if c.get("resources") == Some(&json!({})) {
                c.remove("resources");
            }
        }
    }

    /// The template's init containers and containers, as JSON objects.
    fn containers(
        template: &mut serde_json::Map<String, Value>,
    ) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
        let spec = template.get_mut("spec").and_then(Value::as_object_mut);
        spec.into_iter().flat_map(|spec| {
            spec.iter_mut()
                .filter(|(k, _)| *k == "initContainers" || *k == "containers")
                .filter_map(|(_, v)| v.as_array_mut())
                .flatten()
                .filter_map(Value::as_object_mut)
        })
    }

    /// Reads the patch shape back into the template (`$patch` dropped).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PodTemplateSpec>, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(None);
        }
        let Some(Value::Object(mut t)) = v.get("spec").and_then(|s| s.get("template")).cloned()
        else {
            return Err(D::Error::custom(
                "data: expected {\"spec\":{\"template\":{…}}}, the patch of the revision's set",
            ));
        };
        t.remove(PATCH);
        drop_go_empty_fields(&mut t);
        serde_json::from_value(Value::Object(t))
            .map(Some)
            .map_err(|e| D::Error::custom(format!("data.spec.template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{decode_json, write_json};
    use crate::v1::{Container, ControllerRevision, Object, ObjectMeta, PodSpec, PodTemplateSpec};
    use serde_json::{json, Value};

    #[test]
    fn revision_data_is_the_sets_patch_and_reads_back() {
        let rev = ControllerRevision {
            api_version: "apps/v1".into(),
            kind: "ControllerRevision".into(),
            metadata: Some(ObjectMeta {
                name: "web-abc".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            data: Some(PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: "nginx:1".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            revision: 2,
        };
        let mut out = Vec::new();
        write_json(&Object::from(rev.clone()), &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["data"],
            json!({"spec": {"template": {"$patch": "replace",
                "metadata": {"creationTimestamp": null},
                "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {}}]}}}})
        );
        // Keys sorted and Go's empty fields in: the bytes kubectl makes of the set.
        assert_eq!(
            serde_json::to_string(&v["data"]).unwrap(),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null},"spec":{"containers":[{"image":"nginx:1","name":"c","resources":{}}]}}}}"#
        );
        let back = decode_json(v).unwrap();
        assert_eq!(back.as_controller_revision(), Some(&rev));
        let bad = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "x"}, "data": {"containers": []}, "revision": 1});
        let err = decode_json(bad).unwrap_err().to_string();
        assert!(err.contains("spec"), "{err}");
    }
}
