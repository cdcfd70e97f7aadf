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
